package clustertest_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/keyward/keyward/cluster/clustertest"
)

// A successful write's audit record commits in the write's own Raft entry: once the write is
// acknowledged, every node's audit log holds exactly one record of it, naming the node that
// served it, and the chain verifies. A refused check-and-set is audited by the serving node.
func TestWriteAuditedWithItsEntry(t *testing.T) {
	c := clustertest.StartCluster(t, binary, clustertest.Options{Voters: 3})
	ctx := ctxT(t, 60*time.Second)
	lead, err := c.WaitForLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	follower := (lead + 1) % len(c.Nodes)

	out := mustCall(t, c, follower, http.MethodPut, "/v1/secrets/app/audited", c.Token, map[string]any{"value": "v1"})
	versionID, _ := out["version_id"].(string)
	if versionID == "" {
		t.Fatalf("write answer without a version id: %v", out)
	}
	for i := range c.Nodes {
		waitAudit(t, c, i, "path=app/audited&action=WRITE", func(m map[string]any) bool { return m["version_id"] == versionID })
		// The list is read linearizably: right after the record appeared, it appears once.
		recs := mustCall(t, c, i, http.MethodGet, "/v1/sys/audit?limit=1000&path=app/audited&action=WRITE", c.Token, nil)["records"].([]any)
		if len(recs) != 1 {
			t.Fatalf("node %d: %d WRITE records for one write: %v", i, len(recs), recs)
		}
		r := recs[0].(map[string]any)
		if r["success"] != true || r["node_id"] != c.IDs[follower] || r["principal_id"] == "" || r["request_id"] == "" {
			t.Fatalf("node %d: write record %v", i, r)
		}
	}

	// A check-and-set that does not match is refused and audited as a failure.
	if st, out := call(t, c, follower, http.MethodPut, "/v1/secrets/app/audited", c.Token, map[string]any{"value": "v2", "cas": 7}); st != http.StatusConflict {
		t.Fatalf("stale cas: %d %v", st, out)
	}
	rec := waitAudit(t, c, lead, "path=app/audited&action=WRITE&outcome=failure", func(map[string]any) bool { return true })
	if rec["reason"] != "cas_mismatch" || rec["node_id"] != c.IDs[follower] {
		t.Fatalf("refused write record %v", rec)
	}
	if rep := mustCall(t, c, follower, http.MethodGet, "/v1/sys/audit/verify", c.Token, nil); rep["ok"] != true {
		t.Fatalf("verify: %v", rep)
	}
}
