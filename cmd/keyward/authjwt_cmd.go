package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/keyward/keyward/api/wire"
)

// auth is `keyward auth METHOD SUBCOMMAND`: the configuration of login methods.
func (x cli) auth(args []string) int {
	if len(args) == 0 {
		x.authUsage(x.stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		if len(args) > 1 {
			return x.auth(append(args[1:len(args):len(args)], "--help"))
		}
		x.authUsage(x.stdout)
		return 0
	case "jwt":
		return x.runGroup(authJWTGroup(), args[1:])
	}
	fmt.Fprintf(x.stderr, "error: unknown auth method %q\n\n", args[0])
	x.authUsage(x.stderr)
	return 2
}

// authUsage prints the usage of `keyward auth` to w.
func (x cli) authUsage(w io.Writer) {
	fmt.Fprint(w, `Usage: keyward auth <method> <subcommand> [arguments]

Configures login methods. Userpass needs no configuration ("keyward user create --password-stdin")
and AppRoles have "keyward approle".

Methods:
  jwt  trusted JWT/OIDC issuers: set, delete

Run "keyward auth <method> --help" for its subcommands.
`)
}

// authJWTGroup is `keyward auth jwt`.
func authJWTGroup() commandGroup {
	return commandGroup{
		name: "auth jwt",
		summary: "Configures the JWT/OIDC issuers whose tokens \"keyward login jwt\" accepts. A login becomes the\n" +
			"SERVICE principal named by the issuer's principal claim (default \"sub\").",
		commands: []subcommand{authJWTSetCommand(), authJWTDeleteCommand()},
	}
}

func authJWTSetCommand() subcommand {
	return subcommand{
		name:     "set",
		synopsis: "NAME --config-file F [--token-ttl D] [--token-max-ttl D] [-o json]",
		summary: "Creates or replaces the trusted JWT issuer NAME.\n" +
			"Its configuration is the JSON object in F (\"-\": stdin):\n" +
			"  {\"issuer\": \"https://issuer.example\", \"audiences\": [\"keyward\"],\n" +
			"   \"jwks_url\": \"https://issuer.example/keys\" | \"jwks_file\": \"/path\" | \"jwks\": \"{...}\",\n" +
			"   \"principal_claim\": \"sub\", \"bound_claims\": {\"ns\": \"prod\"}, \"algorithms\": [\"RS256\"]}\n" +
			"The server checks the configuration before it stores it.",
		minArgs: 1, maxArgs: 1,
		setup: func(fs *flag.FlagSet) action {
			file := fs.String("config-file", "", "read the issuer's JSON configuration from file `F` (\"-\": stdin; required)")
			var ttl, maxTTL durationFlag
			fs.Var(&ttl, "token-ttl", "tokens of a login last `D`, such as 15m, and renew by as much (default the server's)")
			fs.Var(&maxTTL, "token-max-ttl", "tokens of a login live at most `D`, renewals included (default the server's)")
			return func(ctx context.Context, s *session, args []string) error {
				name := args[0]
				switch {
				case name == "":
					return usagef("NAME is empty")
				case *file == "":
					return usagef("--config-file is required")
				}
				cfg, err := s.readJSONObject(*file)
				if err != nil {
					return err
				}
				if err := s.c.PutJWTIssuer(ctx, name, cfg, ttl.s, maxTTL.s); err != nil {
					return err
				}
				if s.json {
					return printJSON(s.stdout, map[string]any{"name": name, "ok": true})
				}
				return say(s.stdout, "Configured JWT issuer %s\n", name)
			}
		},
	}
}

// readJSONObject reads a JSON object from file, or from stdin when file is "-".
func (s *session) readJSONObject(file string) (json.RawMessage, error) {
	var r io.Reader = s.stdin
	name := "stdin"
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		defer f.Close()
		r, name = f, file
	} else if r == nil || isTerminal(s.stdin) {
		return nil, usagef("no config: pipe it on stdin or name a file (stdin is a terminal)")
	}
	b, err := io.ReadAll(io.LimitReader(r, wire.MaxBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read config from %s: %w", name, err)
	}
	if len(b) > wire.MaxBodyBytes {
		return nil, fmt.Errorf("config in %s is over %d bytes", name, wire.MaxBodyBytes)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, fmt.Errorf("config in %s is not a JSON object: %w", name, err)
	} else if obj == nil {
		return nil, fmt.Errorf("config in %s is not a JSON object", name)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, fmt.Errorf("config in %s: %w", name, err)
	}
	return buf.Bytes(), nil
}

func authJWTDeleteCommand() subcommand {
	return subcommand{
		name:     "delete",
		synopsis: "NAME [-o json]",
		summary:  "Deletes the trusted issuer NAME; its tokens no longer log in.",
		minArgs:  1, maxArgs: 1,
		setup: func(*flag.FlagSet) action {
			return func(ctx context.Context, s *session, args []string) error {
				if args[0] == "" {
					return usagef("NAME is empty")
				}
				if err := s.c.DeleteJWTIssuer(ctx, args[0]); err != nil {
					return err
				}
				if s.json {
					return printJSON(s.stdout, map[string]any{"deleted": true, "name": args[0]})
				}
				return say(s.stdout, "Deleted JWT issuer %s\n", args[0])
			}
		},
	}
}
