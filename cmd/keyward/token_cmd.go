package main

import (
	"context"
	"flag"
	"strings"
)

// tokenGroup is `keyward token`.
func tokenGroup() commandGroup {
	return commandGroup{
		name:     "token",
		summary:  "Inspects, renews and revokes tokens; by default the one of --token ($KEYWARD_TOKEN).",
		commands: []subcommand{tokenSelfCommand(), tokenRenewCommand(), tokenRevokeCommand()},
	}
}

func tokenSelfCommand() subcommand {
	return subcommand{
		name:     "self",
		synopsis: "[-o json]",
		summary:  "Shows whom the token (or client certificate) authenticates: principal, method, roles, admin.",
		setup: func(*flag.FlagSet) action {
			return func(ctx context.Context, s *session, _ []string) error {
				ti, err := s.c.TokenSelf(ctx)
				if err != nil {
					return err
				}
				if s.json {
					if ti.Roles == nil {
						ti.Roles = []string{}
					}
					return printJSON(s.stdout, ti)
				}
				return table(s.stdout, "Principal:\t"+ti.PrincipalType+"/"+ti.PrincipalID, [][]any{
					{"Method:", orDash(ti.Method)},
					{"Roles:", joinOrDash(ti.Roles)},
					{"Admin:", yesNo(ti.Admin)},
				})
			}
		},
	}
}

func tokenRenewCommand() subcommand {
	return subcommand{
		name:     "renew",
		synopsis: "[-o json]",
		summary:  "Extends the token by its TTL, up to its maximum lifetime, and prints the new expiry.",
		setup: func(*flag.FlagSet) action {
			return func(ctx context.Context, s *session, _ []string) error {
				l, err := s.c.RenewToken(ctx)
				if err != nil {
					return err
				}
				if s.json {
					return printJSON(s.stdout, l)
				}
				expires := "never"
				if !l.ExpiresAt.IsZero() {
					expires = timestamp(l.ExpiresAt)
				}
				return table(s.stdout, "Renewed:\tyes", [][]any{
					{"Accessor:", l.Accessor},
					{"Principal:", l.Principal},
					{"Expires:", expires},
				})
			}
		},
	}
}

func tokenRevokeCommand() subcommand {
	return subcommand{
		name:     "revoke",
		synopsis: "[--accessor A | --token-stdin] [-o json]",
		summary: "Revokes a token, by default the one of --token ($KEYWARD_TOKEN).\n" +
			"With --token-stdin it revokes the token read from stdin; with --accessor (admins) the token\n" +
			"with that accessor. A revoked token stops working on every node.",
		extraHint: "a token to revoke is read with --token-stdin, never from an argument",
		setup: func(fs *flag.FlagSet) action {
			accessor := fs.String("accessor", "", "revoke the token with this `accessor` (admins)")
			fromStdin := fs.Bool("token-stdin", false, "revoke the token read from stdin")
			return func(ctx context.Context, s *session, _ []string) error {
				if *accessor != "" && *fromStdin {
					return usagef("--accessor and --token-stdin are mutually exclusive")
				}
				*accessor = strings.TrimSpace(*accessor)
				if *accessor == "" && isFlagSet(fs, "accessor") {
					return usagef("--accessor is empty")
				}
				tok := ""
				if *fromStdin {
					var err error
					if tok, err = s.readCredential("token", "", "", false); err != nil {
						return err
					}
				}
				if err := s.c.RevokeToken(ctx, tok, *accessor); err != nil {
					return err
				}
				what := "the token"
				switch {
				case *accessor != "":
					what = "the token with accessor " + *accessor
				case *fromStdin:
					what = "the token read from stdin"
				}
				if s.json {
					return printJSON(s.stdout, map[string]any{"revoked": true, "accessor": *accessor})
				}
				return say(s.stdout, "Revoked %s\n", what)
			}
		},
	}
}

// isFlagSet reports whether the flag name was given on the command line.
func isFlagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
