package cluster

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/keyward/keyward/fsm"
)

// gatedFSM applies nothing while its gate is held: Raft hands it entries (and counts them
// applied) while its state stays behind, as when a restarted node replays a long log.
type gatedFSM struct {
	f    *fsm.FSM
	gate sync.Mutex
}

func (g *gatedFSM) Apply(l *raft.Log) any {
	g.gate.Lock()
	defer g.gate.Unlock()
	return g.f.Apply(l)
}
func (g *gatedFSM) Snapshot() (raft.FSMSnapshot, error) { return g.f.Snapshot() }
func (g *gatedFSM) Restore(r io.ReadCloser) error       { return g.f.Restore(r) }
func (g *gatedFSM) AppliedIndex() uint64                { return g.f.AppliedIndex() }

// The age of a node's state follows what its FSM has applied, not what Raft has handed it.
func TestStalenessFollowsTheFSM(t *testing.T) {
	g := &gatedFSM{f: fsm.New(nil)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := startSingleNode(t, ctx, t.TempDir(), g)
	defer n.Close()
	waitFor(t, ctx, "fresh state", func() bool { s := n.Staleness(); return s >= 0 && s < time.Second })

	g.gate.Lock()
	held := true
	defer func() { // before Close, which would wait for the blocked Apply forever
		if held {
			g.gate.Unlock()
		}
	}()
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := fsm.MustEncode(fsm.CmdPutVersion, fsm.PutVersion{
				SecretID: "s", Path: "p", Expect: uint64(i), VersionID: "v", Ciphertext: []byte("ct"),
				WrappedKey: []byte("wk"), KMSKeyID: "k", KMSProvider: "test", At: 1,
			})
			_, _, _ = n.Apply(ctx, cmd)
		}()
	}
	waitFor(t, ctx, "raft ahead of the FSM", func() bool { return n.raft.AppliedIndex() > g.f.AppliedIndex() })
	waitFor(t, ctx, "state reported old while the FSM lags", func() bool { return n.Staleness() > 700*time.Millisecond })
	held = false
	g.gate.Unlock()
	wg.Wait()
	waitFor(t, ctx, "fresh again", func() bool { s := n.Staleness(); return s >= 0 && s < 500*time.Millisecond })
}

func waitFor(t *testing.T, ctx context.Context, what string, ok func() bool) {
	t.Helper()
	for !ok() {
		select {
		case <-ctx.Done():
			t.Fatalf("never: %s", what)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// A linearizable read's confirmed read index dates the state as a probe does, so a node that
// has not finished a probe yet (one may wait out freshnessTimeout while the cluster forms)
// still knows how old its state is after serving such a read.
func TestReadIndexDatesTheState(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := startSingleNode(t, ctx, t.TempDir(), fsm.New(nil))
	defer n.Close()
	waitFor(t, ctx, "a probe finished", func() bool {
		n.fresh.mu.Lock()
		defer n.fresh.mu.Unlock()
		if n.fresh.inFlight {
			return false
		}
		// Forget what the probes learned and keep the tracker from probing again.
		n.fresh.at, n.fresh.probes, n.fresh.inFlight = time.Time{}, nil, true
		return true
	})
	if s := n.Staleness(); s >= 0 {
		t.Fatalf("staleness %v after forgetting every probe, want unknown", s)
	}
	before := time.Now()
	if _, err := n.ReadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "state dated by the read", func() bool { s := n.Staleness(); return s >= 0 && s <= time.Since(before) })
}

// Answered read indexes waiting for a lagging FSM stay bounded; merging them never dates the
// state later than the reads it holds prove.
func TestReadIndexProbesStayBounded(t *testing.T) {
	n := &Node{}
	t0 := time.Unix(1000, 0)
	sent := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Millisecond) }
	for i := 1; i <= 1000; i++ {
		n.noteReadIndex(sent(i), uint64(i))
	}
	if got := len(n.fresh.probes); got > maxProbes {
		t.Fatalf("%d probes kept, want at most %d", got, maxProbes)
	}
	for _, applied := range []uint64{1, 500, 968, 999, 1000} {
		n.settleProbes(applied)
		// Index i was confirmed by a read sent at sent(i): the state may claim sent(applied)
		// at most, and the newest reads (never merged) date it exactly once applied.
		if at := n.fresh.at; at.After(sent(int(applied))) {
			t.Fatalf("applied %d: state dated %v, later than %v", applied, at.Sub(t0), sent(int(applied)).Sub(t0))
		}
	}
	if want := sent(1000); !n.fresh.at.Equal(want) {
		t.Fatalf("all applied: state dated %v, want %v", n.fresh.at.Sub(t0), want.Sub(t0))
	}
}

// startSingleNode opens a one-node cluster in dir on f and waits until it leads. The caller
// closes it.
func startSingleNode(t *testing.T, ctx context.Context, dir string, f raft.FSM) *Node {
	t.Helper()
	n, err := Open(Config{
		NodeID: "n1", DataDir: dir, RaftAddr: freeAddr(t), Bootstrap: true, FSM: f,
		Noop: fsm.MustEncode(fsm.CmdNoop, fsm.Noop{}), Codec: fsm.Codec{},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.WaitForLeader(ctx); err != nil {
		n.Close()
		t.Fatal(err)
	}
	return n
}
