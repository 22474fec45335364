package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/keyward/keyward/api/client"
	"github.com/keyward/keyward/api/wire"
)

// putCommand is `keyward secret put`.
func putCommand() subcommand {
	return subcommand{
		name:     "put",
		synopsis: "PATH [--file F] [--cas N] [--description D] [-o json]",
		summary: "Writes a new version of a secret. The value is read from stdin, bytes exactly as given,\n" +
			"or from --file; never from an argument.",
		minArgs: 1, maxArgs: 1,
		extraHint: "the value is read from stdin or --file, never from an argument",
		setup: func(fs *flag.FlagSet) action {
			file := fs.String("file", "", "read the value from file `F` (\"-\": stdin)")
			var o client.PutOptions
			fs.Func("cas", "write only if the CURRENT version is `N` (0: only if the secret does not exist)", func(s string) error {
				n, err := strconv.ParseUint(s, 10, 64)
				if err != nil {
					return fmt.Errorf("not a version number: %w", err)
				}
				o.CAS = &n
				return nil
			})
			fs.Func("description", "set the secret's description to `D`", func(s string) error {
				o.Description = &s
				return nil
			})
			return func(ctx context.Context, s *session, args []string) error {
				value, err := s.readValue(*file)
				if err != nil {
					return err
				}
				res, err := s.c.Put(ctx, args[0], value, o)
				if err != nil {
					return err
				}
				if s.json {
					return printJSON(s.stdout, res)
				}
				return say(s.stdout, "Wrote %s version %d\n", res.Path, res.Version)
			}
		},
	}
}

// readValue reads a secret value from file, or from stdin when file is "" or "-". It refuses
// a terminal stdin rather than wait for typing, and values over the API's limit.
func (s *session) readValue(file string) ([]byte, error) {
	var r io.Reader = s.stdin
	name := "stdin"
	if file != "" && file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("read value: %w", err)
		}
		defer f.Close()
		r, name = f, file
	} else if isTerminal(s.stdin) {
		return nil, usagef("no value: pipe it on stdin or use --file (stdin is a terminal)")
	}
	if r == nil {
		return nil, usagef("no value: pipe it on stdin or use --file")
	}
	b, err := io.ReadAll(io.LimitReader(r, wire.MaxValueBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read value from %s: %w", name, err)
	}
	if len(b) > wire.MaxValueBytes {
		return nil, fmt.Errorf("value from %s is over the %d-byte limit", name, wire.MaxValueBytes)
	}
	return b, nil
}
