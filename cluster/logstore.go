package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	bolt "go.etcd.io/bbolt"
)

// Raft's entries live in a segmented write-ahead log (hashicorp/raft-wal) in raft/wal: an
// append writes the entries once at the end of a segment file and syncs it, where Bolt copies
// them into B+tree pages, allocates and frees pages and syncs twice per commit. Term and vote
// (the stable store) stay in Bolt, raft/raft.db. A data dir made before the WAL, whose raft.db
// holds the entries, keeps them there: it is used as it is, never converted.

// Names of the Raft log stores, as logged and as Config.LogStore takes them.
const (
	LogStoreWAL  = "wal"
	LogStoreBolt = "bolt"
)

// raftStores are a node's Raft log and stable stores.
type raftStores struct {
	stable *raftboltdb.BoltStore // raft.db
	wal    *wal.WAL              // nil when the entries are in raft.db
	meta   *metadb.BoltMetaDB    // the WAL's own index of segments (WAL.Close leaves it open)
}

// logs is the log store: the WAL, or raft.db in a data dir made before the WAL.
func (s *raftStores) logs() raft.LogStore {
	if s.wal != nil {
		return s.wal
	}
	return s.stable
}

// openRaftStores opens the stores in dir (the node's raft directory). want names the log store
// of a new data dir ("" means the WAL); an existing one keeps the store it has.
func openRaftStores(dir, want string, boltOpts *bolt.Options) (*raftStores, error) {
	stable, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db"), BoltOptions: boltOpts})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", filepath.Join(dir, "raft.db"), err)
	}
	s := &raftStores{stable: stable}
	walDir := filepath.Join(dir, "wal")
	_, serr := os.Stat(walDir)
	useWAL := serr == nil
	if errors.Is(serr, os.ErrNotExist) {
		last, err := stable.LastIndex()
		if err != nil {
			stable.Close()
			return nil, fmt.Errorf("read %s: %w", filepath.Join(dir, "raft.db"), err)
		}
		useWAL = last == 0 && want != LogStoreBolt // a new data dir
	} else if serr != nil {
		stable.Close()
		return nil, serr
	}
	if !useWAL {
		return s, nil
	}
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		stable.Close()
		return nil, err
	}
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(walDir, wal.WithMetaStore(meta))
	if err != nil {
		meta.Close()
		stable.Close()
		return nil, fmt.Errorf("open %s: %w", walDir, err)
	}
	s.wal, s.meta = w, meta
	return s, nil
}

// kind names the log store in use.
func (s *raftStores) kind() string {
	if s.wal != nil {
		return LogStoreWAL
	}
	return LogStoreBolt
}

func (s *raftStores) Close() error {
	var err error
	if s.wal != nil {
		err = s.wal.Close()
		if cerr := s.meta.Close(); err == nil {
			err = cerr
		}
	}
	if cerr := s.stable.Close(); err == nil {
		err = cerr
	}
	return err
}
