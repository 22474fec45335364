package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"time"

	"github.com/keyward/keyward/api/client"
)

// approleGroup is `keyward approle`.
func approleGroup() commandGroup {
	return commandGroup{
		name: "approle",
		summary: "Manages AppRoles: a workload logs in as a SERVICE principal with the AppRole's role id and a\n" +
			"secret id (\"keyward login approle\").",
		commands: []subcommand{approleCreateCommand(), approleSecretIDCommand(), approleDeleteCommand(), approleListCommand()},
	}
}

// durationFlag is a flag holding a positive Go duration, kept as text for the API.
type durationFlag struct{ s string }

func (d *durationFlag) String() string { return d.s }

func (d *durationFlag) Set(v string) error {
	n, err := time.ParseDuration(v)
	if err != nil || n <= 0 {
		return fmt.Errorf("want a positive duration such as 10m, not %q", v)
	}
	d.s = v
	return nil
}

func approleCreateCommand() subcommand {
	return subcommand{
		name:     "create",
		synopsis: "NAME --principal SERVICE_ID [--secret-id-ttl D] [--secret-id-uses N] [--cidr CIDR ...] [--token-ttl D] [--token-max-ttl D] [-o json]",
		summary: "Creates or replaces the AppRole NAME and prints its role id.\n" +
			"Its logins become the SERVICE principal SERVICE_ID. The role id stays the same when the\n" +
			"AppRole is replaced. Secret ids are minted with \"keyward approle secret-id\".",
		minArgs: 1, maxArgs: 1,
		setup: func(fs *flag.FlagSet) action {
			principal := fs.String("principal", "", "the SERVICE principal `ID` a login becomes (required)")
			var secretTTL, tokenTTL, tokenMaxTTL durationFlag
			fs.Var(&secretTTL, "secret-id-ttl", "secret ids expire after `D`, such as 10m (default never)")
			uses := fs.Int("secret-id-uses", 0, "a secret id works for `N` logins (default 0: unlimited)")
			var cidrs nameList
			fs.Func("cidr", "allow logins only from `CIDR`, such as 10.0.0.0/8 (repeatable, or comma-separated; default any address)", func(v string) error {
				var l nameList
				if err := l.Set(v); err != nil {
					return err
				}
				for _, c := range l {
					if _, err := netip.ParsePrefix(c); err != nil {
						return fmt.Errorf("%q is not a CIDR such as 10.0.0.0/8", c)
					}
				}
				return cidrs.Set(v)
			})
			fs.Var(&tokenTTL, "token-ttl", "tokens of a login last `D` and renew by as much (default the server's)")
			fs.Var(&tokenMaxTTL, "token-max-ttl", "tokens of a login live at most `D`, renewals included (default the server's)")
			return func(ctx context.Context, s *session, args []string) error {
				name := args[0]
				switch {
				case name == "":
					return usagef("NAME is empty")
				case *principal == "":
					return usagef("--principal is required")
				case *uses < 0:
					return usagef("--secret-id-uses must not be negative")
				}
				req := client.AppRoleRequest{Principal: *principal, SecretIDTTL: secretTTL.s, SecretIDUses: *uses,
					CIDRs: cidrs, TokenTTL: tokenTTL.s, TokenMaxTTL: tokenMaxTTL.s}
				rid, err := s.c.PutAppRole(ctx, name, req)
				if err != nil {
					return err
				}
				if s.json {
					return printJSON(s.stdout, map[string]any{"name": name, "role_id": rid})
				}
				return say(s.stdout, "Role ID: %s\n", rid)
			}
		},
	}
}

func approleSecretIDCommand() subcommand {
	return subcommand{
		name:     "secret-id",
		synopsis: "NAME [-o json]",
		summary: "Mints a secret id for the AppRole NAME and prints it, once.\n" +
			"The secret id goes to stdout alone on its line, its expiry to stderr. It is shown only this\n" +
			"once.",
		minArgs: 1, maxArgs: 1,
		setup: func(*flag.FlagSet) action {
			return func(ctx context.Context, s *session, args []string) error {
				if args[0] == "" {
					return usagef("NAME is empty")
				}
				sid, exp, err := s.c.MintSecretID(ctx, args[0])
				if err != nil {
					return err
				}
				if s.json {
					out := map[string]any{"secret_id": sid}
					if !exp.IsZero() {
						out["expires_at"] = exp
					}
					return printJSON(s.stdout, out)
				}
				if err := say(s.stdout, "%s\n", sid); err != nil {
					return err
				}
				expires := "never expires"
				if !exp.IsZero() {
					expires = "expires " + timestamp(exp)
				}
				fmt.Fprintf(s.stderr, "(secret id for %s, shown once; it %s)\n", args[0], expires)
				return nil
			}
		},
	}
}

func approleDeleteCommand() subcommand {
	return subcommand{
		name:     "delete",
		synopsis: "NAME [-o json]",
		summary:  "Deletes the AppRole NAME and every secret id minted for it.",
		minArgs:  1, maxArgs: 1,
		setup: func(*flag.FlagSet) action {
			return func(ctx context.Context, s *session, args []string) error {
				if args[0] == "" {
					return usagef("NAME is empty")
				}
				if err := s.c.DeleteAppRole(ctx, args[0]); err != nil {
					return err
				}
				if s.json {
					return printJSON(s.stdout, map[string]any{"deleted": true, "name": args[0]})
				}
				return say(s.stdout, "Deleted AppRole %s\n", args[0])
			}
		},
	}
}

func approleListCommand() subcommand {
	return subcommand{
		name:     "list",
		synopsis: "[-o json]",
		summary: "Lists the AppRoles as NAME ROLE-ID PRINCIPAL SECRET-ID-TTL USES CIDRS TOKEN-TTL TOKEN-MAX-TTL.\n" +
			"\"-\" is the default: no expiry, unlimited uses, any address, the server's token lifetimes.",
		setup: func(*flag.FlagSet) action {
			return func(ctx context.Context, s *session, _ []string) error {
				as, err := s.c.AppRoles(ctx)
				if err != nil {
					return err
				}
				if as == nil {
					as = []client.AppRole{}
				}
				if s.json {
					return printJSON(s.stdout, map[string]any{"approles": as})
				}
				rows := make([][]any, 0, len(as))
				for _, a := range as {
					uses := "-"
					if a.SecretIDUses > 0 {
						uses = fmt.Sprint(a.SecretIDUses)
					}
					rows = append(rows, []any{a.Name, a.RoleID, a.Principal, nanoDuration(a.SecretIDTTL), uses,
						joinOrDash(a.CIDRs), nanoDuration(a.TokenTTL), nanoDuration(a.TokenMaxTTL)})
				}
				return table(s.stdout, "NAME\tROLE-ID\tPRINCIPAL\tSECRET-ID-TTL\tUSES\tCIDRS\tTOKEN-TTL\tTOKEN-MAX-TTL", rows)
			}
		},
	}
}

// nanoDuration formats a duration in nanoseconds for a table, "-" for 0.
func nanoDuration(ns int64) string {
	if ns == 0 {
		return "-"
	}
	return time.Duration(ns).String()
}
