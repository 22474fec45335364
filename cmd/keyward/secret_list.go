package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/keyward/keyward/api/client"
	"github.com/keyward/keyward/api/wire"
)

// listCommand is `keyward secret list`.
func listCommand() subcommand {
	return subcommand{
		name:     "list",
		synopsis: "[PREFIX] [--limit N] [--after PATH] [--all] [-o json]",
		summary:  "Lists the secrets whose path starts with PREFIX, ordered by path, as PATH VERSION UPDATED.",
		minArgs:  0, maxArgs: 1,
		setup: func(fs *flag.FlagSet) action {
			limit := fs.Int("limit", 0, "secrets per page (server default 100, at most 1000)")
			after := fs.String("after", "", "start after this `path` (the \"next\" cursor of a previous page)")
			all := fs.Bool("all", false, "follow the pages to the end")
			return func(ctx context.Context, s *session, args []string) error {
				if *limit < 0 {
					return usagef("--limit must not be negative")
				}
				prefix := ""
				if len(args) == 1 {
					prefix = args[0]
				}
				res, err := listPages(ctx, s.c, prefix, client.ListOptions{Limit: *limit, After: *after}, *all)
				if err != nil {
					return err
				}
				if s.json {
					return printJSON(s.stdout, res)
				}
				rows := make([][]any, 0, len(res.Secrets))
				for _, m := range res.Secrets {
					rows = append(rows, []any{m.Path, m.CurrentVersion, timestamp(m.UpdatedAt)})
				}
				if err := table(s.stdout, "PATH\tVERSION\tUPDATED", rows); err != nil {
					return err
				}
				if res.Next != "" {
					fmt.Fprintf(s.stderr, "(more secrets follow: --after %s, or --all)\n", res.Next)
				}
				return nil
			}
		},
	}
}

// listPages lists one page, or every page from o.After on when all is set, merged into one
// answer without a Next cursor.
func listPages(ctx context.Context, c *client.Client, prefix string, o client.ListOptions, all bool) (*wire.ListResponse, error) {
	res, err := c.List(ctx, prefix, o)
	if err != nil || !all {
		return res, err
	}
	merged := &wire.ListResponse{Secrets: res.Secrets}
	for res.Next != "" {
		if res.Next == o.After {
			return nil, fmt.Errorf("list: the server repeated the cursor %q", res.Next)
		}
		o.After = res.Next
		if res, err = c.List(ctx, prefix, o); err != nil {
			return nil, err
		}
		merged.Secrets = append(merged.Secrets, res.Secrets...)
	}
	if merged.Secrets == nil {
		merged.Secrets = []wire.SecretMeta{}
	}
	return merged, nil
}
