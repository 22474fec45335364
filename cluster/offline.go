package cluster

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// offline is a node's stores opened without running Raft, for operator tools.
type offline struct {
	stores *raftStores
	snaps  *raft.FileSnapshotStore
}

func openOffline(dataDir string) (*offline, error) {
	dir := filepath.Join(dataDir, "raft")
	// Opening the stores would create them: refuse a directory without Raft state instead.
	if db := filepath.Join(dir, "raft.db"); !fileExists(db) {
		return nil, fmt.Errorf("cluster: no Raft state in %s (%s does not exist)", dataDir, db)
	}
	stores, err := openRaftStores(dir, "", &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("cluster: %w (is the node still running?)", err)
	}
	snaps, err := raft.NewFileSnapshotStore(dir, 3, io.Discard)
	if err != nil {
		stores.Close()
		return nil, err
	}
	return &offline{stores: stores, snaps: snaps}, nil
}

func (o *offline) close() { o.stores.Close() }

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
