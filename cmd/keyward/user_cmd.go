package main

import (
	"cmp"
	"context"
	"flag"
	"slices"

	"github.com/keyward/keyward/api/client"
)

// userGroup is `keyward user`.
func userGroup() commandGroup {
	return commandGroup{
		name:    "user",
		summary: "Manages USER principals: people who log in with a password (\"keyward login userpass\").",
		commands: []subcommand{principalCreateCommand(client.PrincipalUser, "user", "NAME"),
			principalDeleteCommand(client.PrincipalUser, "user", "NAME"), principalListCommand(client.PrincipalUser, "users")},
	}
}

// serviceGroup is `keyward service`.
func serviceGroup() commandGroup {
	return commandGroup{
		name: "service",
		summary: "Manages SERVICE principals: workloads that authenticate with a client certificate (its\n" +
			"SPIFFE URI or common name is the id), an AppRole or a JWT. Grants and roles attach to the id.",
		commands: []subcommand{principalCreateCommand(client.PrincipalService, "service", "ID"),
			principalDeleteCommand(client.PrincipalService, "service", "ID"), principalListCommand(client.PrincipalService, "services")},
	}
}

// principalCreateCommand is `keyward user create` or `keyward service create`.
func principalCreateCommand(typ, noun, arg string) subcommand {
	synopsis, hint := arg+" [--role R ...] [--admin] [-o json]", ""
	summary := "Creates or replaces the " + noun + " " + arg + " with exactly the roles and admin flag given.\n" +
		"Admins manage principals, grants, login methods, the cluster and snapshots, and read the audit log."
	if typ == client.PrincipalUser {
		synopsis = arg + " [--password-stdin] [--role R ...] [--admin] [-o json]"
		hint = "a password is read with --password-stdin, never from an argument"
		summary += "\nWith --password-stdin the user gets a new password, read from stdin; without, a replaced\n" +
			"user keeps its password."
	}
	return subcommand{
		name:     "create",
		synopsis: synopsis,
		summary:  summary,
		minArgs:  1, maxArgs: 1,
		extraHint: hint,
		setup: func(fs *flag.FlagSet) action {
			var roles nameList
			fs.Var(&roles, "role", "make it a member of role `R` (repeatable, or comma-separated)")
			admin := fs.Bool("admin", false, "give it administration rights")
			pwStdin := new(bool)
			if typ == client.PrincipalUser {
				fs.BoolVar(pwStdin, "password-stdin", false, "read the user's password from stdin")
			}
			return func(ctx context.Context, s *session, args []string) error {
				id := args[0]
				if id == "" {
					return usagef("%s is empty", arg)
				}
				pw := ""
				if *pwStdin {
					var err error
					if pw, err = s.readCredential("password", "", "", true); err != nil {
						return err
					}
				}
				if err := s.c.PutPrincipal(ctx, typ, id, pw, roles, *admin); err != nil {
					return err
				}
				if s.json {
					return printJSON(s.stdout, client.Principal{Type: typ, ID: id, Roles: roles, Admin: *admin})
				}
				return say(s.stdout, "Created %s %s\n", noun, id)
			}
		},
	}
}

// principalDeleteCommand is `keyward user delete`, `service delete` or `role delete`.
func principalDeleteCommand(typ, noun, arg string) subcommand {
	return subcommand{
		name:     "delete",
		synopsis: arg + " [-o json]",
		summary:  "Deletes the " + noun + " " + arg + ". Its grants stay until revoked (\"keyward policy revoke\").",
		minArgs:  1, maxArgs: 1,
		setup: func(*flag.FlagSet) action {
			return func(ctx context.Context, s *session, args []string) error {
				if args[0] == "" {
					return usagef("%s is empty", arg)
				}
				if err := s.c.DeletePrincipal(ctx, typ, args[0]); err != nil {
					return err
				}
				if s.json {
					return printJSON(s.stdout, map[string]any{"deleted": true, "type": typ, "id": args[0]})
				}
				return say(s.stdout, "Deleted %s %s\n", noun, args[0])
			}
		},
	}
}

// principalListCommand is `keyward user list` or `keyward service list`.
func principalListCommand(typ, plural string) subcommand {
	return subcommand{
		name:     "list",
		synopsis: "[-o json]",
		summary:  "Lists the " + plural + " as ID ADMIN ROLES, ordered by id.",
		setup: func(*flag.FlagSet) action {
			return func(ctx context.Context, s *session, _ []string) error {
				ps, err := principalsOf(ctx, s.c, typ)
				if err != nil {
					return err
				}
				if s.json {
					return printJSON(s.stdout, map[string]any{"principals": ps})
				}
				rows := make([][]any, 0, len(ps))
				for _, p := range ps {
					rows = append(rows, []any{p.ID, yesNo(p.Admin), joinOrDash(p.Roles)})
				}
				return table(s.stdout, "ID\tADMIN\tROLES", rows)
			}
		},
	}
}

// principalsOf lists the principals of type typ ("": all), ordered by type and id.
func principalsOf(ctx context.Context, c *client.Client, typ string) ([]client.Principal, error) {
	all, err := c.Principals(ctx)
	if err != nil {
		return nil, err
	}
	out := []client.Principal{}
	for _, p := range all {
		if typ == "" || p.Type == typ {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b client.Principal) int {
		return cmp.Or(cmp.Compare(slices.Index(principalTypes, a.Type), slices.Index(principalTypes, b.Type)), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}
