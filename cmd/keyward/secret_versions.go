package main

import (
	"context"
	"flag"
)

// versionsCommand is `keyward secret versions`.
func versionsCommand() subcommand {
	return subcommand{
		name:     "versions",
		synopsis: "PATH [-o json]",
		summary:  "Lists the versions of a secret, newest first, as VERSION STATE CREATED DESTROYED.",
		minArgs:  1, maxArgs: 1,
		setup: func(*flag.FlagSet) action {
			return func(ctx context.Context, s *session, args []string) error {
				res, err := s.c.Versions(ctx, args[0])
				if err != nil {
					return err
				}
				if s.json {
					return printJSON(s.stdout, res)
				}
				rows := make([][]any, 0, len(res.Versions))
				for _, v := range res.Versions {
					rows = append(rows, []any{v.Version, v.State, timestamp(v.CreatedAt), v.Destroyed})
				}
				return table(s.stdout, "VERSION\tSTATE\tCREATED\tDESTROYED", rows)
			}
		},
	}
}
