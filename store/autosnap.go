package store

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// AutoSnapshotConfig sets where and how often the leader writes snapshot files.
type AutoSnapshotConfig struct {
	Dir      string
	Interval time.Duration
	Retain   int
	Log      *slog.Logger
}

// AutoSnapshots writes a snapshot file every interval while isLeader reports true, keeping
// the newest Retain files. It returns when ctx ends.
func AutoSnapshots(ctx context.Context, s *Service, isLeader func() bool, c AutoSnapshotConfig) {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Retain < 1 {
		c.Retain = 1
	}
	// The leader takes these itself, as an internal admin principal (audited as such).
	ctx = WithCaller(ctx, Caller{Type: "SERVICE", ID: "keyward/auto-snapshot", Method: "internal", Admin: true})
	t := time.NewTicker(c.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !isLeader() {
			continue
		}
		path, err := writeSnapshotFile(ctx, s, c.Dir)
		if err != nil {
			c.Log.Error("automatic snapshot failed", "err", err)
			continue
		}
		c.Log.Info("automatic snapshot written", "path", path)
		pruneSnapshots(c.Dir, c.Retain, c.Log)
	}
}

const snapPrefix, snapSuffix = "keyward-", ".snap"

func writeSnapshotFile(ctx context.Context, s *Service, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	name := snapPrefix + time.Now().UTC().Format("20060102T150405.000000000Z") + snapSuffix
	final := filepath.Join(dir, name)
	tmp := final + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	err = s.Snapshot(ctx, f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("snapshot file: %w", err)
	}
	return final, nil
}

func pruneSnapshots(dir string, retain int, log *slog.Logger) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	var names []string
	for _, e := range entries {
		if n := e.Name(); strings.HasPrefix(n, snapPrefix) && strings.HasSuffix(n, snapSuffix) {
			names = append(names, n)
		}
	}
	sort.Strings(names) // timestamps sort in time order
	for len(names) > retain {
		if err := os.Remove(filepath.Join(dir, names[0])); err != nil {
			log.Warn("pruning snapshot", "err", err)
		}
		names = names[1:]
	}
}
