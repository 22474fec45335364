package clustertest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyward/keyward/api/client"
	"github.com/keyward/keyward/cluster/clustertest"
)

// TestPartitionedLeader: cut the leader off from the others. On its side writes and
// linearizable reads fail in bounded time, never hang; stale reads still answer and their
// headers show the staleness. The majority elects a leader and keeps serving.
func TestPartitionedLeader(t *testing.T) {
	c := clustertest.StartCluster(t, binary, clustertest.Options{Voters: 3})
	ctx := ctxT(t, 120*time.Second)
	old, err := c.WaitForLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	oc := c.Client(old)
	if _, err := oc.Put(ctx, "part/x", []byte("before"), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	p := c.Isolate(old)

	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, werr := oc.Put(wctx, "part/x", []byte("minority"), client.PutOptions{})
	cancel()
	writeTook := time.Since(start)
	if werr == nil {
		t.Fatal("a write on the isolated leader succeeded")
	}
	if !client.IsCode(werr, "no_leader") && !client.IsCode(werr, "outcome_unknown") {
		t.Fatalf("minority write error: %v", werr)
	}
	start = time.Now()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, rerr := oc.Get(rctx, "part/x", client.Selector{})
	cancel()
	readTook := time.Since(start)
	if rerr == nil || !client.IsCode(rerr, "no_leader") {
		t.Fatalf("linearizable read on the isolated leader: %v", rerr)
	}
	// The stale read still answers, with the old value and headers that show it is stale.
	var stale *client.Secret
	deadline := time.Now().Add(20 * time.Second)
	for {
		stale, err = oc.GetWith(ctx, "part/x", client.Selector{}, client.ReadOptions{Stale: true})
		if err != nil {
			t.Fatalf("stale read on the minority: %v", err)
		}
		if stale.LastContact > 2*time.Second || stale.LastContact < 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stale read never showed its age: %+v", stale)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if string(stale.Value) != "before" || stale.Consistency != "stale" {
		t.Fatalf("stale read = %+v", stale)
	}
	if _, err := oc.GetWith(ctx, "part/x", client.Selector{}, client.ReadOptions{MaxStale: time.Second}); !client.IsCode(err, "too_stale") {
		t.Fatalf("max_stale read on the minority: %v", err)
	}
	t.Logf("minority: write failed after %s (%v), linearizable read after %s, stale read last contact %s",
		writeTook.Round(time.Millisecond), werr, readTook.Round(time.Millisecond), stale.LastContact.Round(time.Millisecond))

	// The majority side has a leader and takes writes.
	other := (old + 1) % 3
	mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		if _, err := c.Client(other).Put(mctx, "part/x", []byte("majority"), client.PutOptions{}); err == nil {
			break
		} else if mctx.Err() != nil {
			t.Fatalf("majority never accepted a write: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.Heal()
	// Once healed, the old leader catches up and serves the majority's value.
	deadline = time.Now().Add(30 * time.Second)
	for {
		got, err := oc.Get(ctx, "part/x", client.Selector{})
		if err == nil && string(got.Value) == "majority" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("old leader after heal: %v %v", got, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRemoveAndRejoin removes a voter, checks the cluster works without it, and adds it back.
func TestRemoveAndRejoin(t *testing.T) {
	c := clustertest.StartCluster(t, binary, clustertest.Options{Voters: 3})
	ctx := ctxT(t, 120*time.Second)
	leader, err := c.WaitForLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	victim := (leader + 2) % 3
	if err := c.Client(leader).RemovePeer(ctx, c.IDs[victim]); err != nil {
		t.Fatal(err)
	}
	peers, err := c.Client(leader).Peers(ctx)
	if err != nil || len(peers) != 2 {
		t.Fatalf("after remove: %+v %v", peers, err)
	}
	if _, err := c.Client(leader).Put(ctx, "rm/x", []byte("two"), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	// Add it back through the node itself: it joins via any member.
	if err := c.Client(victim).JoinCluster(ctx, c.RaftAddrs[leader]); err != nil {
		t.Fatal(err)
	}
	waitPeers(t, ctx, c, leader, 3)
	got, err := c.Client(victim).Get(ctx, "rm/x", client.Selector{})
	if err != nil || string(got.Value) != "two" {
		t.Fatalf("rejoined node read: %v %v", got, err)
	}
}

func waitPeers(t *testing.T, ctx context.Context, c *clustertest.Cluster, i, n int) {
	t.Helper()
	for {
		peers, err := c.Client(i).Peers(ctx)
		if err == nil && len(peers) == n {
			ok := true
			for _, p := range peers {
				ok = ok && p.Reachable
			}
			if ok {
				return
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("never saw %d reachable peers: %+v %v", n, peers, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestBootstrapExpectFormsOneCluster: five voters started together with bootstrap-expect
// form exactly one cluster: every node names the same leader and the same five peers.
func TestBootstrapExpectFormsOneCluster(t *testing.T) {
	c := clustertest.StartCluster(t, binary, clustertest.Options{Voters: 5, Replicas: 1})
	ctx := ctxT(t, 120*time.Second)
	leader, err := c.WaitForLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitPeers(t, ctx, c, leader, 6)
	for i := range c.Nodes {
		peers, err := c.Client(i).Peers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		voters := 0
		for _, p := range peers {
			if p.Voter {
				voters++
			}
			if p.Leader && p.ID != c.IDs[leader] {
				t.Fatalf("node %d sees leader %s, want %s", i, p.ID, c.IDs[leader])
			}
		}
		if len(peers) != 6 || voters != 5 {
			t.Fatalf("node %d sees %d peers, %d voters: %+v", i, len(peers), voters, peers)
		}
	}
	// The read replica serves linearizable reads and forwards writes.
	replica := 5
	if _, err := c.Client(replica).Put(ctx, "rr/x", []byte("via-replica"), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := c.Client(replica).Get(ctx, "rr/x", client.Selector{})
	if err != nil || string(got.Value) != "via-replica" {
		t.Fatalf("replica read: %v %v", got, err)
	}
	members, err := c.Client(0).Members(ctx)
	if err != nil || len(members) != 6 {
		t.Fatalf("gossip members: %+v %v", members, err)
	}
}

// TestSnapshotAcrossClusters saves a snapshot from one cluster and restores it into a fresh
// cluster that shares the KEK; a tampered file is refused.
func TestSnapshotAcrossClusters(t *testing.T) {
	a := clustertest.StartCluster(t, binary, clustertest.Options{Voters: 3})
	ctx := ctxT(t, 120*time.Second)
	for i := 0; i < 50; i++ {
		if _, err := a.Client(i%3).Put(ctx, fmt.Sprintf("snapx/s%d", i), []byte(fmt.Sprintf("v%d", i)), client.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := a.Client(1).SnapshotSave(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	b := clustertest.NewCluster(t, binary)
	b.KEKFile = a.KEKFile // same KEK, new cluster
	for i := 0; i < 3; i++ {
		b.Reserve()
	}
	for i := 0; i < 3; i++ {
		b.StartReserved(i, "--bootstrap-expect", "3", "--join", joinList(b.RaftAddrs))
	}
	if _, err := b.WaitForLeader(ctx); err != nil {
		t.Fatal(err)
	}
	b.Init(ctx)
	if _, err := b.Client(0).Put(ctx, "snapx/only-in-b", []byte("gone after restore"), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(buf.Bytes())
	tampered[len(tampered)/2] ^= 1
	if err := b.Client(2).SnapshotRestore(ctx, bytes.NewReader(tampered)); !client.IsCode(err, "invalid_snapshot") {
		t.Fatalf("tampered snapshot: %v", err)
	}
	if err := b.Client(2).SnapshotRestore(ctx, bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatalf("restore: %v\n%s\n%s", err, b.Dump(), string(b.Nodes[2].Logs()))
	}
	// The restored state carries cluster a's principals and tokens.
	b.Token = a.Token
	for i := range b.Nodes {
		for _, k := range []int{0, 17, 49} {
			got, err := b.Client(i).Get(ctx, fmt.Sprintf("snapx/s%d", k), client.Selector{})
			if err != nil || string(got.Value) != fmt.Sprintf("v%d", k) {
				t.Fatalf("cluster b node %d snapx/s%d: %v %v", i, k, got, err)
			}
		}
		if _, err := b.Client(i).Get(ctx, "snapx/only-in-b", client.Selector{}); !client.IsCode(err, "not_found") {
			t.Fatalf("node %d still has a secret the snapshot did not: %v", i, err)
		}
	}
	// Writes continue after the restore.
	if _, err := b.Client(1).Put(ctx, "snapx/s0", []byte("after"), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

func joinList(addrs []string) string {
	out := ""
	for i, a := range addrs {
		if i > 0 {
			out += ","
		}
		out += a
	}
	return out
}

// TestOperatorRecover: two of three voters are lost for good; the survivor is stopped,
// recovered with `keyward operator recover`, and starts as a one-node cluster with its data.
func TestOperatorRecover(t *testing.T) {
	c := clustertest.StartCluster(t, binary, clustertest.Options{Voters: 3})
	ctx := ctxT(t, 120*time.Second)
	if _, err := c.Client(0).Put(ctx, "rec/x", []byte("kept"), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	survivor := 0
	// Make sure the survivor has the write before the others disappear.
	if _, err := c.Client(survivor).Get(ctx, "rec/x", client.Selector{}); err != nil {
		t.Fatal(err)
	}
	c.Kill(1)
	c.Kill(2)
	c.Stop(survivor)
	raftAddr := c.RaftAddrs[survivor]
	out, err := exec.Command(binary, "operator", "recover", "--data-dir", c.Nodes[survivor].DataDir,
		"--node-id", c.IDs[survivor], "--raft-addr", raftAddr).CombinedOutput()
	if err != nil {
		t.Fatalf("operator recover: %v\n%s", err, out)
	}
	c.Restart(survivor)
	if err := c.Nodes[survivor].WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := c.Client(survivor).Get(ctx, "rec/x", client.Selector{})
	if err != nil || string(got.Value) != "kept" {
		t.Fatalf("after recover: %v %v", got, err)
	}
	if _, err := c.Client(survivor).Put(ctx, "rec/y", []byte("new"), client.PutOptions{}); err != nil {
		t.Fatalf("write after recover: %v", err)
	}
}

// TestForeignCARefused: a node whose certificate comes from another CA cannot join, and a
// client that does not trust the cluster CA cannot talk to the API.
func TestForeignCARefused(t *testing.T) {
	c := clustertest.StartCluster(t, binary, clustertest.Options{Voters: 3})
	ctx := ctxT(t, 60*time.Second)
	leader, err := c.WaitForLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A node from another cluster's CA (same gossip key, so only TLS can stop it).
	rogue := clustertest.NewCluster(t, binary)
	rogue.GossipKey = c.GossipKey
	i := rogue.Reserve()
	rogue.StartReserved(i, "--join", c.RaftAddrs[leader])
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		peers, err := c.Client(leader).Peers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(peers) != 3 {
			t.Fatalf("a node with a foreign certificate joined: %+v", peers)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !logsContain(c.Nodes[leader].Logs(), "refused cluster connection") {
		t.Fatalf("leader did not log the refused connection:\n%s", c.Dump())
	}
	// A client that trusts only the rogue CA cannot reach the API.
	rc := rogue.Client(i)
	_ = rc
	foreign := &http.Client{Timeout: 3 * time.Second, Transport: client.NewTransport(rogue.TLS)}
	if _, err := foreign.Get(c.Nodes[leader].URL() + "/v1/sys/health"); err == nil {
		t.Fatal("a client trusting another CA reached the API")
	}
	_ = os.Remove(filepath.Join(rogue.Dir, "unused"))
	_ = errors.New
}

// TestReadYourWritesAndAutoSnapshots: min_index makes a stale read on a follower wait for the
// write it names; the leader writes automatic snapshot files and keeps only the newest ones;
// a dead voter is removed after the cleanup threshold while three voters remain.
func TestReadYourWritesAutoSnapshotsDeadCleanup(t *testing.T) {
	snapDir := t.TempDir()
	c := clustertest.StartCluster(t, binary, clustertest.Options{Voters: 4, Args: []string{
		"--auto-snapshot-dir", snapDir, "--auto-snapshot-interval", "300ms", "--auto-snapshot-retain", "2",
		"--dead-server-cleanup", "2s"}})
	ctx := ctxT(t, 120*time.Second)
	leader, err := c.WaitForLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	follower := (leader + 1) % 4
	for i := 0; i < 20; i++ {
		res, err := c.Client(leader).Put(ctx, "ryw/x", []byte(fmt.Sprint(i)), client.PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Client(follower).GetWith(ctx, "ryw/x", client.Selector{}, client.ReadOptions{Stale: true, MinIndex: res.Index})
		if err != nil {
			t.Fatal(err)
		}
		if got.Version < res.Version || got.Index < res.Index {
			t.Fatalf("min_index %d read saw version %d at index %d, want version >= %d", res.Index, got.Version, got.Index, res.Version)
		}
	}
	if _, err := c.Client(follower).GetWith(ctx, "ryw/x", client.Selector{}, client.ReadOptions{Stale: true, MinIndex: 1 << 40}); !client.IsCode(err, "index_not_reached") {
		t.Fatalf("unreachable min_index: %v", err)
	}

	// Automatic snapshot files: written, checksummed, at most two kept.
	deadline := time.Now().Add(20 * time.Second)
	for {
		files, _ := filepath.Glob(filepath.Join(snapDir, "keyward-*.snap"))
		if len(files) == 2 {
			b, err := os.ReadFile(files[1])
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(b, []byte("keyward-snapshot v1\n")) || !bytes.Contains(b, []byte("\nsha256 ")) {
				t.Fatalf("snapshot file %s is not a keyward snapshot", files[1])
			}
			time.Sleep(time.Second) // more rounds run; retention must still hold
			if files, _ = filepath.Glob(filepath.Join(snapDir, "keyward-*.snap")); len(files) > 2 {
				t.Fatalf("retention kept %d files", len(files))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("automatic snapshots: %v", files)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Dead-server cleanup: kill one of four voters; it is removed (three remain). Kill another:
	// it stays, since removing it would leave fewer than three voters.
	victim := (leader + 2) % 4
	c.Kill(victim)
	waitVoters(t, ctx, c, leader, 3)
	second := (leader + 3) % 4
	c.Kill(second)
	time.Sleep(4 * time.Second) // past the threshold: the rule must hold, not a timing race
	peers, err := c.Client(leader).Peers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(peers) != 3 {
		t.Fatalf("cleanup removed a voter below three: %+v", peers)
	}
}

func waitVoters(t *testing.T, ctx context.Context, c *clustertest.Cluster, i, n int) {
	t.Helper()
	for {
		peers, err := c.Client(i).Peers(ctx)
		if err == nil && len(peers) == n {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("never saw %d peers: %+v %v\n%s", n, peers, err, c.Dump())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRemovedLeaderRejoins: the leader removed from the configuration keeps its process and
// its Raft running; joined again, without a restart, it follows the new leader and serves
// linearizable reads of writes made while it was out.
func TestRemovedLeaderRejoins(t *testing.T) {
	c := clustertest.StartCluster(t, binary, clustertest.Options{Voters: 3})
	ctx := ctxT(t, 120*time.Second)
	old, err := c.WaitForLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Client(old).RemovePeer(ctx, c.IDs[old]); err != nil {
		t.Fatal(err)
	}
	// The removed node knows no leader now: wait for one among the other two.
	lead := -1
	for lead < 0 {
		for i := range c.Nodes {
			if h, err := c.Health(i); i != old && err == nil && h.State == "Leader" {
				lead = i
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("no new leader\n%s", c.Dump())
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitPeers(t, ctx, c, lead, 2)
	if _, err := c.Client(lead).Put(ctx, "rm/leader", []byte("while out"), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Client(old).JoinCluster(ctx, c.RaftAddrs[lead]); err != nil {
		t.Fatal(err)
	}
	waitPeers(t, ctx, c, lead, 3)
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := c.Client(old).Get(ctx, "rm/leader", client.Selector{})
		if err == nil && string(got.Value) == "while out" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rejoined former leader: %v %v\n%s", got, err, c.Dump())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !c.Nodes[old].Running() {
		t.Fatal("the former leader's process exited")
	}
}
