package clustertest_test

import (
	"testing"
	"time"

	"github.com/keyward/keyward/api/client"
	"github.com/keyward/keyward/cluster/clustertest"
)

// TestMaxStaleAfterPartition: a follower cut off while the majority writes hears the leader's
// heartbeats again right after the partition heals, well before replication (backed off
// during the partition) catches it up. A max_stale read must still never return state older
// than its bound: every max_stale=1s read that succeeds after the heal returns the write
// acknowledged seconds before it.
func TestMaxStaleAfterPartition(t *testing.T) {
	c := clustertest.StartCluster(t, binary, clustertest.Options{Voters: 3})
	ctx := ctxT(t, 120*time.Second)
	leader, err := c.WaitForLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f := (leader + 1) % 3
	lc, fc := c.Client(leader), c.Client(f)
	if _, err := lc.Put(ctx, "stale/x", []byte("before"), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	waitValue(t, fc, "stale/x", "before", client.ReadOptions{Stale: true})

	p := c.Isolate(f)
	if _, err := lc.Put(ctx, "stale/x", []byte("after"), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	acked := time.Now()
	// Keep the partition until the follower reports its state 3 s old (and replication to it
	// has failed for as long).
	for {
		s, err := fc.GetWith(ctx, "stale/x", client.Selector{}, client.ReadOptions{Stale: true})
		if err != nil {
			t.Fatal(err)
		}
		if string(s.Value) != "before" {
			t.Fatalf("the isolated follower read %q", s.Value)
		}
		if s.Staleness > 3*time.Second {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the isolated follower never reported its age: %+v", s)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := fc.GetWith(ctx, "stale/x", client.Selector{}, client.ReadOptions{MaxStale: time.Second}); !client.IsCode(err, "too_stale") {
		t.Fatalf("max_stale read during the partition: %v", err)
	}
	p.Heal()
	healed := time.Now()
	refused := 0
	for {
		s, err := fc.GetWith(ctx, "stale/x", client.Selector{}, client.ReadOptions{MaxStale: time.Second})
		switch {
		case err == nil && string(s.Value) == "after":
			t.Logf("write acknowledged %s before the heal; first max_stale read served %s after it (%d refused as too stale meanwhile)",
				healed.Sub(acked).Round(time.Millisecond), time.Since(healed).Round(time.Millisecond), refused)
			return
		case err == nil:
			t.Fatalf("max_stale=1s read %s after the heal returned %q, older than a write acknowledged %s before it (staleness header %s, last contact %s)",
				time.Since(healed).Round(time.Millisecond), s.Value, time.Since(acked).Round(time.Millisecond), s.Staleness, s.LastContact)
		case client.IsCode(err, "too_stale"):
			refused++
		default:
			t.Fatalf("max_stale read after the heal: %v", err)
		}
		if ctx.Err() != nil {
			t.Fatal("the follower never caught up")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitValue(t *testing.T, c *client.Client, path, want string, ro client.ReadOptions) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, err := c.GetWith(t.Context(), path, client.Selector{}, ro)
		if err == nil && string(s.Value) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never read %q: %v %v", path, want, s, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
