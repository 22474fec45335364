package main

import (
	"context"
	"flag"
	"slices"

	"github.com/keyward/keyward/api/client"
)

// roleGroup is `keyward role`.
func roleGroup() commandGroup {
	return commandGroup{
		name: "role",
		summary: "Manages ROLE principals and their members. A member gets every grant of its roles, and\n" +
			"administration rights when a role has them.",
		commands: []subcommand{roleCreateCommand(), principalDeleteCommand(client.PrincipalRole, "role", "NAME"),
			roleMemberCommand(true), roleMemberCommand(false), roleListCommand()},
	}
}

func roleCreateCommand() subcommand {
	return subcommand{
		name:     "create",
		synopsis: "NAME [--admin] [-o json]",
		summary:  "Creates or replaces the role NAME; with --admin its members get administration rights.",
		minArgs:  1, maxArgs: 1,
		setup: func(fs *flag.FlagSet) action {
			admin := fs.Bool("admin", false, "give the role's members administration rights")
			return func(ctx context.Context, s *session, args []string) error {
				if args[0] == "" {
					return usagef("NAME is empty")
				}
				if err := s.c.PutPrincipal(ctx, client.PrincipalRole, args[0], "", nil, *admin); err != nil {
					return err
				}
				if s.json {
					return printJSON(s.stdout, client.Principal{Type: client.PrincipalRole, ID: args[0], Admin: *admin})
				}
				return say(s.stdout, "Created role %s\n", args[0])
			}
		},
	}
}

// roleMemberCommand is `keyward role add-member` (add) or `keyward role remove-member`.
func roleMemberCommand(add bool) subcommand {
	sc := subcommand{
		name:     "add-member",
		synopsis: "ROLE TYPE/ID [-o json]",
		summary:  "Makes the principal TYPE/ID (USER/alice, SERVICE/web) a member of ROLE. Both must exist.",
		minArgs:  2, maxArgs: 2,
	}
	if !add {
		sc.name, sc.summary = "remove-member", "Takes the principal TYPE/ID out of ROLE."
	}
	sc.setup = func(*flag.FlagSet) action {
		return func(ctx context.Context, s *session, args []string) error {
			role := args[0]
			if role == "" {
				return usagef("ROLE is empty")
			}
			typ, id, err := parsePrincipal(args[1], false)
			if err != nil {
				return err
			}
			if add {
				err = s.c.AddRoleMember(ctx, role, typ, id)
			} else {
				err = s.c.RemoveRoleMember(ctx, role, typ, id)
			}
			if err != nil {
				return err
			}
			if s.json {
				return printJSON(s.stdout, map[string]any{"role": role, "principal": typ + "/" + id, "member": add})
			}
			if add {
				return say(s.stdout, "Added %s/%s to role %s\n", typ, id, role)
			}
			return say(s.stdout, "Removed %s/%s from role %s\n", typ, id, role)
		}
	}
	return sc
}

// roleView is a role with its members, for `keyward role list`.
type roleView struct {
	ID      string   `json:"id"`
	Admin   bool     `json:"admin"`
	Members []string `json:"members"` // TYPE/ID
}

func roleListCommand() subcommand {
	return subcommand{
		name:     "list",
		synopsis: "[-o json]",
		summary:  "Lists the roles as ROLE ADMIN MEMBERS, ordered by name; members are TYPE/ID.",
		setup: func(*flag.FlagSet) action {
			return func(ctx context.Context, s *session, _ []string) error {
				ps, err := principalsOf(ctx, s.c, "")
				if err != nil {
					return err
				}
				roles := []roleView{}
				for _, p := range ps {
					if p.Type == client.PrincipalRole {
						roles = append(roles, roleView{ID: p.ID, Admin: p.Admin, Members: []string{}})
					}
				}
				for _, p := range ps { // ordered by type and id, so members are too
					for _, r := range p.Roles {
						if i := slices.IndexFunc(roles, func(v roleView) bool { return v.ID == r }); i >= 0 {
							roles[i].Members = append(roles[i].Members, p.Type+"/"+p.ID)
						}
					}
				}
				if s.json {
					return printJSON(s.stdout, map[string]any{"roles": roles})
				}
				rows := make([][]any, 0, len(roles))
				for _, r := range roles {
					rows = append(rows, []any{r.ID, yesNo(r.Admin), joinOrDash(r.Members)})
				}
				return table(s.stdout, "ROLE\tADMIN\tMEMBERS", rows)
			}
		},
	}
}
