package cluster

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/keyward/keyward/fsm"
)

// A new data dir keeps Raft's entries in the WAL, and finds them there again.
func TestNewDataDirUsesTheWAL(t *testing.T) {
	dir := t.TempDir()
	s, err := openRaftStores(dir, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.kind() != LogStoreWAL {
		t.Fatalf("new data dir: log store %q, want %q", s.kind(), LogStoreWAL)
	}
	var logs []*raft.Log
	for i := uint64(1); i <= 100; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte{byte(i)}})
	}
	if err := s.logs().StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := s.stable.SetUint64([]byte("CurrentTerm"), 7); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = openRaftStores(dir, LogStoreBolt, nil) // an existing dir keeps its store
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.kind() != LogStoreWAL {
		t.Fatalf("reopened: log store %q, want %q", s.kind(), LogStoreWAL)
	}
	if last, _ := s.logs().LastIndex(); last != 100 {
		t.Fatalf("last index %d after reopening, want 100", last)
	}
	var l raft.Log
	if err := s.logs().GetLog(42, &l); err != nil || l.Data[0] != 42 {
		t.Fatalf("entry 42: %v %v", l.Data, err)
	}
	if term, err := s.stable.GetUint64([]byte("CurrentTerm")); err != nil || term != 7 {
		t.Fatalf("term %d, %v", term, err)
	}
}

// A data dir made before the WAL (its entries in raft.db) keeps running on raft.db: a node
// restarted with the default configuration replays what it committed there.
func TestDataDirBeforeTheWALKeepsBolt(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	n := startSingleNode(t, ctx, dir, fsm.New(nil), LogStoreBolt)
	_, idx, err := n.Apply(ctx, fsm.MustEncode(fsm.CmdNoop, fsm.Noop{}))
	if err != nil {
		t.Fatal(err)
	}
	if n.stores.kind() != LogStoreBolt {
		t.Fatalf("log store %q, want %q", n.stores.kind(), LogStoreBolt)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	f := fsm.New(nil)
	n = startSingleNode(t, ctx, dir, f, "")
	defer n.Close()
	if n.stores.kind() != LogStoreBolt {
		t.Fatalf("restarted: log store %q, want %q", n.stores.kind(), LogStoreBolt)
	}
	if _, err := os.Stat(filepath.Join(dir, "raft", "wal")); !os.IsNotExist(err) {
		t.Fatalf("a WAL directory appeared next to raft.db's entries: %v", err)
	}
	waitFor(t, ctx, "the entries in raft.db replayed", func() bool { return f.AppliedIndex() >= idx })
}
