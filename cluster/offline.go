package cluster

import (
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"
)

// offline is a node's stores opened without running Raft, for operator tools.
type offline struct {
	logs  *raftboltdb.BoltStore
	snaps *raft.FileSnapshotStore
}

func openOffline(dataDir string) (*offline, error) {
	dir := filepath.Join(dataDir, "raft")
	logs, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db"),
		BoltOptions: &bolt.Options{Timeout: time.Second}})
	if err != nil {
		return nil, fmt.Errorf("cluster: open %s (is the node still running?): %w", dir, err)
	}
	snaps, err := raft.NewFileSnapshotStore(dir, 3, io.Discard)
	if err != nil {
		logs.Close()
		return nil, err
	}
	return &offline{logs: logs, snaps: snaps}, nil
}

func (o *offline) close() { o.logs.Close() }
