package main

import (
	"context"
	"flag"
	"strconv"
	"strings"
)

// destroyCommand is `keyward secret destroy`.
func destroyCommand() subcommand {
	return subcommand{
		name:     "destroy",
		synopsis: "PATH --versions N[,N...] [-o json]",
		summary: "Destroys versions of a secret for good: their data keys and ciphertexts are dropped and\n" +
			"only their metadata stays. The CURRENT version cannot be destroyed.",
		minArgs: 1, maxArgs: 1,
		setup: func(fs *flag.FlagSet) action {
			list := fs.String("versions", "", "comma-separated version numbers to destroy (required)")
			return func(ctx context.Context, s *session, args []string) error {
				versions, err := parseVersions(*list)
				if err != nil {
					return err
				}
				res, err := s.c.Destroy(ctx, args[0], versions)
				if err != nil {
					return err
				}
				if s.json {
					return printJSON(s.stdout, res)
				}
				done := make([]string, len(res.Destroyed))
				for i, v := range res.Destroyed {
					done[i] = strconv.FormatUint(v, 10)
				}
				return say(s.stdout, "Destroyed %s version(s) [%s]\n", res.Path, strings.Join(done, ", "))
			}
		},
	}
}

// parseVersions parses "1,2,3" into version numbers.
func parseVersions(list string) ([]uint64, error) {
	if strings.TrimSpace(list) == "" {
		return nil, usagef("--versions is required, e.g. --versions 1,2")
	}
	var out []uint64
	for f := range strings.SplitSeq(list, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
		if err != nil || n == 0 {
			return nil, usagef("--versions: %q is not a version number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// deleteCommand is `keyward secret delete`.
func deleteCommand() subcommand {
	return subcommand{
		name:     "delete",
		synopsis: "PATH [--purge] [-o json]",
		summary: "Soft-deletes a secret: it is no longer readable or listed until restored. --purge removes\n" +
			"it and every version for good.",
		minArgs: 1, maxArgs: 1,
		setup: func(fs *flag.FlagSet) action {
			purge := fs.Bool("purge", false, "remove the secret and every version for good")
			return func(ctx context.Context, s *session, args []string) error {
				res, err := s.c.Delete(ctx, args[0], *purge)
				if err != nil {
					return err
				}
				if s.json {
					return printJSON(s.stdout, res)
				}
				if res.Purged {
					return say(s.stdout, "Purged %s\n", res.Path)
				}
				return say(s.stdout, "Deleted %s\n", res.Path)
			}
		},
	}
}

// restoreCommand is `keyward secret restore`.
func restoreCommand() subcommand {
	return subcommand{
		name:     "restore",
		synopsis: "PATH [-o json]",
		summary:  "Restores a soft-deleted secret.",
		minArgs:  1, maxArgs: 1,
		setup: func(*flag.FlagSet) action {
			return func(ctx context.Context, s *session, args []string) error {
				res, err := s.c.Restore(ctx, args[0])
				if err != nil {
					return err
				}
				if s.json {
					return printJSON(s.stdout, res)
				}
				return say(s.stdout, "Restored %s\n", res.Path)
			}
		},
	}
}
