package main

import (
	"context"
	"flag"
	"slices"
	"strings"
	"time"

	"github.com/keyward/keyward/api/client"
)

// policyGroup is `keyward policy`.
func policyGroup() commandGroup {
	return commandGroup{
		name: "policy",
		summary: "Grants principals actions (READ, WRITE, DELETE, ROTATE) on one secret or on a path pattern,\n" +
			"and revokes and lists grants. A grant to a ROLE applies to its members.",
		commands: []subcommand{policyGrantCommand(), policyRevokeCommand(), policyListCommand()},
	}
}

// actionNames are the actions a grant may name.
var actionNames = []string{"READ", "WRITE", "DELETE", "ROTATE"}

func policyGrantCommand() subcommand {
	return subcommand{
		name:     "grant",
		synopsis: "--principal TYPE/ID --actions A[,A...] (--secret PATH | --pattern PATTERN) [--expires T] [-o json]",
		summary: "Grants a principal actions on one secret or on a path pattern, and prints the grant's id.\n" +
			"The grant is on the secret PATH (which must exist) or on every path matching PATTERN, such\n" +
			"as 'prod/*'. Actions are READ, WRITE, DELETE and ROTATE. --expires is an RFC 3339 time or a\n" +
			"duration from now such as 720h.",
		setup: func(fs *flag.FlagSet) action {
			principal := fs.String("principal", "", "the `TYPE/ID` to grant to: USER/alice, SERVICE/web, ROLE/ops (required)")
			var actions nameList
			fs.Var(&actions, "actions", "comma-separated `actions`: READ, WRITE, DELETE, ROTATE (required)")
			secret := fs.String("secret", "", "grant on the secret at `PATH`")
			pattern := fs.String("pattern", "", "grant on the paths matching `PATTERN`, such as 'prod/*'")
			expires := fs.String("expires", "", "the grant expires at `T`: an RFC 3339 time, or a duration from now (default never)")
			return func(ctx context.Context, s *session, _ []string) error {
				if *principal == "" {
					return usagef("--principal is required")
				}
				typ, id, err := parsePrincipal(*principal, false)
				if err != nil {
					return err
				}
				if len(actions) == 0 {
					return usagef("--actions is required")
				}
				acts := make([]string, len(actions))
				for i, a := range actions {
					if acts[i] = strings.ToUpper(a); !slices.Contains(actionNames, acts[i]) {
						return usagef("--actions: %q is not one of %s", a, strings.Join(actionNames, ", "))
					}
				}
				if (*secret == "") == (*pattern == "") {
					return usagef("give exactly one of --secret and --pattern")
				}
				g := client.GrantRequest{PrincipalType: typ, PrincipalID: id, Actions: acts, Secret: *secret, Pattern: *pattern}
				if *expires != "" {
					if g.ExpiresAt, err = parseWhen("--expires", *expires, time.Now(), false); err != nil {
						return err
					}
				}
				gid, err := s.c.Grant(ctx, g)
				if err != nil {
					return err
				}
				if s.json {
					return printJSON(s.stdout, map[string]any{"id": gid, "grant": g})
				}
				return say(s.stdout, "Granted %s to %s/%s on %s (grant id %s)\n", strings.Join(acts, ","), typ, id, grantTarget(*secret, *pattern), gid)
			}
		},
	}
}

// grantTarget describes what a grant is on.
func grantTarget(secret, pattern string) string {
	if pattern != "" {
		return "pattern:" + pattern
	}
	return "secret:" + secret
}

// parseWhen parses the value v of flag as an RFC 3339 time or as a duration from now: ago
// before it, otherwise after it. A duration must be positive.
func parseWhen(flag, v string, now time.Time, ago bool) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return time.Time{}, usagef("%s must be an RFC 3339 time such as 2026-01-02T15:04:05Z or a positive duration such as 24h, not %q", flag, v)
	}
	if ago {
		return now.Add(-d), nil
	}
	return now.Add(d), nil
}

func policyRevokeCommand() subcommand {
	return subcommand{
		name:     "revoke",
		synopsis: "ID [-o json]",
		summary:  "Revokes the grant ID (see \"keyward policy list\").",
		minArgs:  1, maxArgs: 1,
		setup: func(*flag.FlagSet) action {
			return func(ctx context.Context, s *session, args []string) error {
				if args[0] == "" {
					return usagef("ID is empty")
				}
				if err := s.c.RevokeGrant(ctx, args[0]); err != nil {
					return err
				}
				if s.json {
					return printJSON(s.stdout, map[string]any{"revoked": true, "id": args[0]})
				}
				return say(s.stdout, "Revoked grant %s\n", args[0])
			}
		},
	}
}

func policyListCommand() subcommand {
	return subcommand{
		name:     "list",
		synopsis: "[--principal TYPE/ID | --principal TYPE] [-o json]",
		summary: "Lists grants as ID PRINCIPAL ACTIONS ON EXPIRES, all or those of one principal or type.\n" +
			"ON is pattern:PATTERN or secret:SECRET-ID.",
		setup: func(fs *flag.FlagSet) action {
			principal := fs.String("principal", "", "only the grants of `TYPE/ID`, or of every principal of TYPE")
			return func(ctx context.Context, s *session, _ []string) error {
				typ, id := "", ""
				if *principal != "" {
					var err error
					if typ, id, err = parsePrincipal(*principal, true); err != nil {
						return err
					}
				}
				gs, err := s.c.Grants(ctx, typ, id)
				if err != nil {
					return err
				}
				if gs == nil {
					gs = []client.Policy{}
				}
				if s.json {
					return printJSON(s.stdout, map[string]any{"grants": gs})
				}
				rows := make([][]any, 0, len(gs))
				for _, g := range gs {
					on := "pattern:" + g.PathPattern
					if g.PathPattern == "" {
						on = "secret:" + g.SecretID
					}
					rows = append(rows, []any{g.ID, g.PrincipalType + "/" + g.PrincipalID, joinOrDash(g.Actions), on, nanoTime(g.ExpiresAt)})
				}
				return table(s.stdout, "ID\tPRINCIPAL\tACTIONS\tON\tEXPIRES", rows)
			}
		},
	}
}

// nanoTime formats Unix nanoseconds for a table, "-" for 0.
func nanoTime(ns int64) string {
	if ns == 0 {
		return "-"
	}
	return timestamp(time.Unix(0, ns))
}
