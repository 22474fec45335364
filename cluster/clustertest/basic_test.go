package clustertest_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
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
	// A client that asks for redirects gets a 307 to the leader's API instead of forwarding.
	follower := (leader + 1) % 3
	noFollow := &http.Client{Transport: c.Nodes[follower].HTTP.Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest(http.MethodPut, c.Nodes[follower].URL()+"/v1/secrets/app/redirected?redirect",
		strings.NewReader(`{"value":"x"}`))
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if want := c.Nodes[leader].URL() + "/v1/secrets/app/redirected?redirect"; resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != want {
		t.Fatalf("redirect: %d %q, want 307 %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	// Metrics name the series operators need.
	resp, err = c.Nodes[follower].HTTP.Get(c.Nodes[follower].URL() + "/metrics") // public
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{"keyward_http_requests_total{", "keyward_http_request_duration_seconds_bucket{",
		"keyward_raft_term ", "keyward_raft_commit_index ", "keyward_raft_applied_index ", "keyward_raft_last_contact_seconds ",
		"keyward_raft_is_leader 0", "keyward_forwarded_applies_total ", "keyward_kms_calls_total ",
		"keyward_kms_datakey_cache_hits_total ", "keyward_audit_pending_records ", "keyward_audit_syncs_total ",
		"keyward_audit_records_total ", "process_resident_memory_bytes "} {
		if !strings.Contains(string(body), m) {
			t.Errorf("/metrics lacks %q", m)
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
