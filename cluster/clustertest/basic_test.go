package clustertest_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/keyward/keyward/api/client"
	"github.com/keyward/keyward/cluster/clustertest"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestClusterFormsForwardsAndReads: three voters form one cluster with bootstrap-expect; a
// write on any node goes to the leader; every node serves linearizable and stale reads with
// the freshness headers; health answers by role.
func TestClusterFormsForwardsAndReads(t *testing.T) {
	c := clustertest.StartCluster(t, binary, clustertest.Options{Voters: 3})
	ctx := ctxT(t, 60*time.Second)
	leader, err := c.WaitForLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range c.Nodes {
		path := fmt.Sprintf("app/from-node-%d", i)
		if _, err := c.Client(i).Put(ctx, path, []byte(fmt.Sprintf("v%d", i)), client.PutOptions{}); err != nil {
			t.Fatalf("write on node %d: %v\n%s", i, err, c.Dump())
		}
		for j := range c.Nodes {
			got, err := c.Client(j).Get(ctx, path, client.Selector{})
			if err != nil {
				t.Fatalf("linearizable read on node %d: %v", j, err)
			}
			if string(got.Value) != fmt.Sprintf("v%d", i) || got.Consistency != "linearizable" || !got.KnownLeader {
				t.Fatalf("node %d read %+v", j, got)
			}
		}
	}
	for j := range c.Nodes {
		got, err := c.Client(j).GetWith(ctx, "app/from-node-0", client.Selector{}, client.ReadOptions{MaxStale: 5 * time.Second})
		if err != nil {
			t.Fatalf("stale read on node %d: %v", j, err)
		}
		if got.Consistency != "stale" || got.Index == 0 {
			t.Fatalf("stale read headers on node %d: %+v", j, got)
		}
	}
	for i := range c.Nodes {
		resp, err := c.Nodes[i].HTTP.Get(c.Nodes[i].URL() + "/v1/sys/health")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := http.StatusTooManyRequests
		if i == leader {
			want = http.StatusOK
		}
		if resp.StatusCode != want {
			t.Fatalf("health of node %d = %d, want %d", i, resp.StatusCode, want)
		}
	}
	peers, err := c.Client(0).Peers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(peers) != 3 {
		t.Fatalf("peers = %+v", peers)
	}
	for _, p := range peers {
		if !p.Voter || !p.Reachable {
			t.Fatalf("peer %+v", p)
		}
	}
	st, err := c.Client(1).ClusterStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Healthy || st.FailureTolerance != 1 || st.Voters != 3 {
		t.Fatalf("status %+v", st)
	}
}
