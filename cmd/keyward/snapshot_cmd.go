package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/keyward/keyward/api/client"
)

// snapshotGroup is `keyward snapshot`.
func snapshotGroup() commandGroup {
	return commandGroup{
		name: "snapshot",
		summary: "Backs up and restores the whole replicated state. A snapshot holds ciphertext and wrapped\n" +
			"data keys only; restoring it needs the same key-encryption keys.",
		commands: []subcommand{snapshotSaveCommand(), snapshotRestoreCommand(), snapshotForceCommand()},
	}
}

func snapshotSaveCommand() subcommand {
	return subcommand{
		name:     "save",
		synopsis: "FILE [-o json]",
		summary: "Saves a consistent, checksummed snapshot of the cluster's state to FILE.\n" +
			"It is written to FILE.tmp (mode 0600) first, then synced and renamed, so FILE is either\n" +
			"complete or untouched.",
		minArgs: 1, maxArgs: 1,
		setup: func(*flag.FlagSet) action {
			return func(ctx context.Context, s *session, args []string) error {
				file := args[0]
				if file == "" {
					return usagef("FILE is empty")
				}
				n, err := saveSnapshot(ctx, s.c, file)
				if err != nil {
					return err
				}
				if s.json {
					return printJSON(s.stdout, map[string]any{"file": file, "bytes": n})
				}
				return say(s.stdout, "Wrote %d bytes to %s\n", n, file)
			}
		},
	}
}

// saveSnapshot streams a snapshot into file.tmp, syncs it and renames it to file; on failure
// it removes file.tmp and leaves file as it was. It returns the bytes written.
func saveSnapshot(ctx context.Context, c *client.Client, file string) (int64, error) {
	cw := &countingWriter{}
	err := writeFileAtomic(file, "snapshot", func(w io.Writer) error {
		cw.w = w
		if err := c.SnapshotSave(ctx, cw); err != nil {
			return err
		}
		if cw.n == 0 {
			return errors.New("snapshot: the server sent an empty snapshot")
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return cw.n, nil
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func snapshotRestoreCommand() subcommand {
	return subcommand{
		name:     "restore",
		synopsis: "FILE [-o json]",
		summary: "Replaces the whole state of the cluster with the snapshot in FILE.\n" +
			"FILE is one written by \"keyward snapshot save\". Every write since the snapshot is lost. The\n" +
			"server checks the snapshot's checksum before it changes anything.",
		minArgs: 1, maxArgs: 1,
		setup: func(*flag.FlagSet) action {
			return func(ctx context.Context, s *session, args []string) error {
				file := args[0]
				f, err := os.Open(file)
				if err != nil {
					return fmt.Errorf("snapshot: %w", err)
				}
				defer f.Close()
				st, err := f.Stat()
				switch {
				case err != nil:
					return fmt.Errorf("snapshot: %w", err)
				case !st.Mode().IsRegular():
					return fmt.Errorf("snapshot: %s is not a regular file", file)
				case st.Size() == 0:
					return fmt.Errorf("snapshot: %s is empty", file)
				}
				cr := &countingReader{r: f}
				if err := s.c.SnapshotRestore(ctx, cr); err != nil {
					return err
				}
				if s.json {
					return printJSON(s.stdout, map[string]any{"restored": true, "file": file, "bytes": cr.n})
				}
				return say(s.stdout, "Restored the cluster from %s (%d bytes)\n", file, cr.n)
			}
		},
	}
}

func snapshotForceCommand() subcommand {
	return subcommand{
		name:     "force",
		synopsis: "[-o json]",
		summary: "Makes the node at --addr take a local Raft snapshot now.\n" +
			"This compacts that node's log; it is not a backup (see \"keyward snapshot save\").",
		setup: func(*flag.FlagSet) action {
			return func(ctx context.Context, s *session, _ []string) error {
				if err := s.c.ForceRaftSnapshot(ctx); err != nil {
					return err
				}
				if s.json {
					return printJSON(s.stdout, map[string]any{"snapshot": true})
				}
				return say(s.stdout, "Took a Raft snapshot\n")
			}
		},
	}
}
