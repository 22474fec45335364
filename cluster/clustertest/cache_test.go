package clustertest_test

import (
	"context"
	"testing"
	"time"

	"github.com/keyward/keyward/api/client"
	"github.com/keyward/keyward/cluster/clustertest"
)

// TestClientCacheSurvivesOutage: with every node stopped, cached reads keep succeeding and
// report a growing stale age; the alert trips past its (short) threshold; after the cluster
// is back a new version reaches the cache within its TTL.
func TestClientCacheSurvivesOutage(t *testing.T) {
	c := clustertest.StartCluster(t, binary, clustertest.Options{Voters: 3})
	ctx := ctxT(t, 120*time.Second)
	if _, err := c.Client(0).Put(ctx, "app/db", []byte("v1"), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	cl := c.Client(1)
	cache := client.NewCache(func(ctx context.Context, path string, sel client.Selector) (*client.Secret, error) {
		fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return cl.Get(fctx, path, sel)
	}, client.CacheOptions{TTL: time.Second, StaleAlert: 2 * time.Second})
	defer cache.Close()
	if v, _, err := cache.Get(ctx, "app/db", client.Selector{}); err != nil || string(v.Value) != "v1" {
		t.Fatalf("first read: %v %v", v, err)
	}
	for i := range c.Nodes {
		c.Kill(i)
	}
	var lastAge time.Duration
	deadline := time.Now().Add(30 * time.Second)
	for !cache.Stats().Alert {
		v, info, err := cache.Get(ctx, "app/db", client.Selector{})
		if err != nil || string(v.Value) != "v1" {
			t.Fatalf("read during the outage: %v %v", v, err)
		}
		if info.Stale && info.Age < lastAge {
			t.Fatalf("stale age went back from %s to %s", lastAge, info.Age)
		}
		lastAge = info.Age
		if time.Now().After(deadline) {
			t.Fatalf("stale alert never tripped (age %s, stats %+v)", lastAge, cache.Stats())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st := cache.Stats(); st.StaleServes == 0 || st.MaxStaleAge < 2*time.Second {
		t.Fatalf("stats during the outage: %+v", st)
	}
	for i := range c.Nodes {
		c.Restart(i)
	}
	for i := range c.Nodes {
		if err := c.Nodes[i].WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Client(0).Put(ctx, "app/db", []byte("v2"), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		v, info, err := cache.Get(ctx, "app/db", client.Selector{})
		if err == nil && string(v.Value) == "v2" && !info.Stale {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new version never reached the cache: %v %+v %v", v, info, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if cache.Stats().Alert {
		t.Fatal("alert still on after recovery")
	}
}
