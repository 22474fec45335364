package clustertest_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/api/client"
	"github.com/keyward/keyward/cluster/clustertest"
)

// ackedWrite is an acknowledged write: the version it created and its value.
type ackedWrite struct {
	version uint64
	value   string
}

// writer keeps writing distinct values to its own secrets through every node in turn and
// remembers each acknowledged write.
type writer struct {
	mu    sync.Mutex
	acked map[string]ackedWrite // path -> last acknowledged write
	ok    int                   // acknowledged writes
	errs  int
}

func (w *writer) run(ctx context.Context, c *clustertest.Cluster, id int) {
	clients := make([]*client.Client, len(c.Nodes))
	for i := range c.Nodes {
		clients[i] = c.Client(i)
	}
	for i := 0; ctx.Err() == nil; i++ {
		path := fmt.Sprintf("load/w%d/s%d", id, i%20)
		val := fmt.Sprintf("w%d-%d", id, i)
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		res, err := clients[i%len(clients)].Put(cctx, path, []byte(val), client.PutOptions{})
		cancel()
		w.mu.Lock()
		if err == nil {
			w.acked[path] = ackedWrite{version: res.Version, value: val}
			w.ok++
		} else {
			w.errs++
		}
		w.mu.Unlock()
	}
}

// checkAcked reads every acknowledged write back, by its version, from every running node
// (linearizable). Later writes whose outcome the client never learned may have landed on top.
func checkAcked(t *testing.T, ctx context.Context, c *clustertest.Cluster, acked map[string]ackedWrite) {
	t.Helper()
	for i := range c.Nodes {
		if !c.Nodes[i].Running() {
			continue
		}
		cl := c.Client(i)
		for path, want := range acked {
			got, err := cl.Get(ctx, path, client.Selector{Version: want.version})
			if err != nil {
				t.Fatalf("node %d: read %s version %d: %v", i, path, want.version, err)
			}
			if string(got.Value) != want.value {
				t.Fatalf("node %d: %s version %d = %q, want acknowledged %q", i, path, want.version, got.Value, want.value)
			}
		}
	}
}

// TestKillLeaderDuringWrites: SIGKILL the leader under continuous writes; a new leader
// serves within seconds and every acknowledged write is on every node afterwards.
func TestKillLeaderDuringWrites(t *testing.T) {
	c := clustertest.StartCluster(t, binary, clustertest.Options{Voters: 3})
	ctx := ctxT(t, 120*time.Second)
	old, err := c.WaitForLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w := &writer{acked: map[string]ackedWrite{}}
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for id := 0; id < 4; id++ {
		wg.Add(1)
		go func(id int) { defer wg.Done(); w.run(wctx, c, id) }(id)
	}
	waitCount(t, w, 100)
	c.Kill(old)
	killed := time.Now()
	newLeader, err := c.WaitForNewLeader(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	elected := time.Since(killed)
	before := count(w)
	waitCount(t, w, before+100) // writes flow again through the new leader
	recovered := time.Since(killed)
	stop()
	wg.Wait()
	t.Logf("leader n%d killed: new leader n%d after %s, 100 more writes acknowledged after %s; %d secrets acknowledged, %d failed writes",
		old+1, newLeader+1, elected.Round(time.Millisecond), recovered.Round(time.Millisecond), len(w.acked), w.errs)

	c.Restart(old)
	if err := c.Nodes[old].WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	checkAcked(t, ctx, c, w.acked)
}

func count(w *writer) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ok
}

// waitCount waits until at least n writes were acknowledged.
func waitCount(t *testing.T, w *writer, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for count(w) < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d writes acknowledged before the deadline", count(w))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFollowerCatchesUpThroughSnapshot: a follower killed while the leader compacts its log
// catches up by snapshot install after a restart.
func TestFollowerCatchesUpThroughSnapshot(t *testing.T) {
	c := clustertest.StartCluster(t, binary, clustertest.Options{Voters: 3,
		Args: []string{"--snapshot-threshold", "50"}})
	ctx := ctxT(t, 120*time.Second)
	leader, err := c.WaitForLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	follower := (leader + 1) % 3
	c.Kill(follower)
	cl := c.Client(leader)
	for i := 0; i < 300; i++ {
		if _, err := cl.Put(ctx, fmt.Sprintf("snap/s%d", i), []byte(fmt.Sprintf("v%d", i)), client.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Force compaction on the leader now rather than waiting for Raft's snapshot timer.
	if err := cl.ForceRaftSnapshot(ctx); err != nil {
		t.Fatal(err)
	}
	last, err := cl.Put(ctx, "snap/last", []byte("last"), client.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_ = last
	c.Restart(follower)
	fc := c.Client(follower)
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, err := fc.GetWith(ctx, "snap/last", client.Selector{}, client.ReadOptions{Stale: true})
		if err == nil && string(got.Value) == "last" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("follower did not catch up: %v\n%s", err, c.Dump())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := 0; i < 300; i += 37 {
		got, err := fc.GetWith(ctx, fmt.Sprintf("snap/s%d", i), client.Selector{}, client.ReadOptions{Stale: true})
		if err != nil || string(got.Value) != fmt.Sprintf("v%d", i) {
			t.Fatalf("follower snap/s%d: %v %v", i, got, err)
		}
	}
	if !logsContain(c.Nodes[follower].Logs(), "snapshot") {
		t.Fatalf("follower log shows no snapshot install:\n%s", c.Dump())
	}
}

// TestFollowerRestartKeepsLeader: restarting a follower several times causes no election.
func TestFollowerRestartKeepsLeader(t *testing.T) {
	c := clustertest.StartCluster(t, binary, clustertest.Options{Voters: 3})
	ctx := ctxT(t, 120*time.Second)
	leader, err := c.WaitForLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := c.Health(leader)
	term := termOf(t, c, leader)
	follower := (leader + 1) % 3
	for round := 0; round < 3; round++ {
		c.Kill(follower)
		if _, err := c.Client(leader).Put(ctx, "stable/x", []byte(fmt.Sprint(round)), client.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		c.Restart(follower)
		if err := c.Nodes[follower].WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
		// Let it run past an election timeout with the leader in place.
		got, err := c.Client(follower).Get(ctx, "stable/x", client.Selector{})
		if err != nil || string(got.Value) != fmt.Sprint(round) {
			t.Fatalf("round %d: follower read %v %v", round, got, err)
		}
	}
	if l := c.Leader(); l != leader {
		t.Fatalf("leader changed from n%d to n%d", leader+1, l+1)
	}
	if now := termOf(t, c, leader); now != term {
		t.Fatalf("term went from %d to %d across follower restarts (leader %s)", term, now, h.NodeID)
	}
}

func termOf(t *testing.T, c *clustertest.Cluster, i int) uint64 {
	t.Helper()
	peers, err := c.Client(i).Peers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		if p.Leader {
			return p.Term
		}
	}
	t.Fatal("no leader in peers")
	return 0
}

func logsContain(b []byte, s string) bool {
	return strings.Contains(strings.ToLower(string(b)), strings.ToLower(s))
}
