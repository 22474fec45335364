package cluster

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/fsm"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type testNode struct {
	*Node
	fsm *fsm.FSM
}

func openNode(t *testing.T, dir, addr string) testNode {
	t.Helper()
	f := fsm.New(nil)
	n, err := Open(Config{
		NodeID: "n1", DataDir: dir, RaftAddr: addr, Bootstrap: true, FSM: f,
		Noop: fsm.MustEncode(fsm.CmdNoop, fsm.Noop{}), Codec: fsm.Codec{},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.WaitForLeader(ctx); err != nil {
		t.Fatal(err)
	}
	return testNode{Node: n, fsm: f}
}

func put(t *testing.T, n testNode, path string, expect uint64) *fsm.Result {
	t.Helper()
	cmd := fsm.MustEncode(fsm.CmdPutVersion, fsm.PutVersion{
		SecretID: "id-" + path, Path: path, Expect: expect, VersionID: "v", Ciphertext: []byte("ct"),
		WrappedKey: []byte("wk"), KMSKeyID: "k", KMSProvider: "test", At: 1,
	})
	resp, idx, err := n.Apply(context.Background(), cmd)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	res := resp.(*fsm.Result)
	if res.Index != idx {
		t.Fatalf("result index %d, future index %d", res.Index, idx)
	}
	return res
}

func TestBootstrapApplyRestart(t *testing.T) {
	dir, addr := t.TempDir(), freeAddr(t)
	n := openNode(t, dir, addr)
	for i := uint64(0); i < 20; i++ {
		if res := put(t, n, "a/b", i); res.Err != nil {
			t.Fatalf("write %d: %v", i+1, res.Err)
		}
	}
	if err := n.Snapshot(); err != nil {
		t.Fatal(err)
	}
	for i := uint64(20); i < 25; i++ {
		put(t, n, "a/b", i)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	// A restart recovers every write from the snapshot plus the log after it.
	n2 := openNode(t, dir, addr)
	defer n2.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	idx, err := n2.ReadIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for n2.fsm.AppliedIndex() < idx {
		select {
		case <-n2.fsm.Applied():
		case <-ctx.Done():
			t.Fatal("FSM never reached the read index")
		}
	}
	sec, ok := n2.fsm.State().SecretByPath("a/b")
	if !ok || sec.LatestVersion != 25 || sec.CurrentVersion != 25 {
		t.Fatalf("after restart: %+v %v", sec, ok)
	}
	if st := n2.Status(); st.State != "Leader" || st.LeaderID != "n1" {
		t.Fatalf("status %+v", st)
	}
}

func TestReadIndexCoversEveryCommittedWrite(t *testing.T) {
	n := openNode(t, t.TempDir(), freeAddr(t))
	defer n.Close()
	ctx := context.Background()
	var wg sync.WaitGroup
	for r := 0; r < 8; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				before := n.Status().CommitIndex
				idx, err := n.ReadIndex(ctx)
				if err != nil {
					t.Errorf("read index: %v", err)
					return
				}
				if idx < before {
					t.Errorf("read index %d below commit index %d seen before the call", idx, before)
				}
			}
		}()
	}
	for i := uint64(0); i < 30; i++ {
		put(t, n, "x", i)
	}
	wg.Wait()
}

func TestLeaderVerifierSharesRounds(t *testing.T) {
	var calls atomic.Int32
	release := make(chan struct{})
	v := &rounds[struct{}]{check: func() (struct{}, error) {
		calls.Add(1)
		<-release
		return struct{}{}, nil
	}}
	ctx := context.Background()
	first := make(chan error, 1)
	go func() { _, err := v.do(ctx); first <- err }()
	for calls.Load() != 1 {
		time.Sleep(time.Millisecond)
	}
	// Readers arriving during round 1 must wait for round 2, and share it.
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); _, _ = v.do(ctx) }()
	}
	waitUntil(t, func() bool { v.mu.Lock(); defer v.mu.Unlock(); return len(v.waiting) == 10 })
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if got := calls.Load(); got != 2 {
		t.Fatalf("%d VerifyLeader calls for 11 readers in two waves, want 2", got)
	}
}

func TestApplyOnClosedNode(t *testing.T) {
	n := openNode(t, t.TempDir(), freeAddr(t))
	n.Close()
	_, _, err := n.Apply(context.Background(), fsm.MustEncode(fsm.CmdNoop, fsm.Noop{}))
	if !errors.Is(err, ErrShutdown) {
		t.Fatalf("apply after close: %v, want ErrShutdown", err)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met before the deadline")
		}
		time.Sleep(time.Millisecond)
	}
}
