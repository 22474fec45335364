package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/keyward/keyward/api/client"
)

// getCommand is `keyward secret get`.
func getCommand() subcommand {
	return subcommand{
		name:     "get",
		synopsis: "PATH [--version N | --state CURRENT|PREVIOUS|DEPRECATED] [-o json]",
		summary: "Reads a version of a secret (default the CURRENT one) and prints its value bytes exactly,\n" +
			"adding a newline only when stdout is a terminal.",
		minArgs: 1, maxArgs: 1,
		setup: func(fs *flag.FlagSet) action {
			var version uint64
			fs.Func("version", "read version `N` (1 or more)", func(v string) error {
				n, err := strconv.ParseUint(v, 10, 64)
				if err != nil || n == 0 {
					return fmt.Errorf("not a version number (1 or more): %q", v)
				}
				version = n
				return nil
			})
			state := fs.String("state", "", "read the version in `STATE`: CURRENT, PREVIOUS or DEPRECATED")
			return func(ctx context.Context, s *session, args []string) error {
				sel := client.Selector{Version: version, State: strings.ToUpper(*state)}
				switch sel.State {
				case "", "CURRENT", "PREVIOUS", "DEPRECATED":
				default:
					return usagef("--state must be CURRENT, PREVIOUS or DEPRECATED, not %q", *state)
				}
				if sel.Version != 0 && sel.State != "" {
					return usagef("--version and --state are mutually exclusive")
				}
				sec, err := s.c.Get(ctx, args[0], sel)
				if err != nil {
					return err
				}
				if s.json {
					return printJSON(s.stdout, sec.SecretResponse)
				}
				out := sec.Value
				if isTerminal(s.stdout) {
					out = append(out, '\n')
				}
				if _, err := s.stdout.Write(out); err != nil {
					return fmt.Errorf("write value: %w", err)
				}
				return nil
			}
		},
	}
}
