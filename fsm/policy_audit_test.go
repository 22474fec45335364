package fsm_test

import (
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/keyward/keyward/fsm"
)

func policy(id string) fsm.Policy {
	return fsm.Policy{
		ID: id, SecretID: "s1", PrincipalType: fsm.PrincipalService, PrincipalID: "svc-a",
		Actions: []fsm.Action{fsm.ActionRead}, CreatedAt: baseTime, CreatedBy: "admin",
	}
}

func policyIDs(st *fsm.State) []string {
	var out []string
	st.Policies(func(p *fsm.Policy) bool { out = append(out, p.ID); return true })
	return out
}

func TestPutPolicyValidation(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(p *fsm.Policy)
		ok     bool
	}{
		{"secret scoped", func(p *fsm.Policy) {}, true},
		{"path pattern", func(p *fsm.Policy) { p.SecretID, p.PathPattern = "", "prod/*" }, true},
		{"several actions", func(p *fsm.Policy) {
			p.Actions = []fsm.Action{fsm.ActionRead, fsm.ActionWrite, fsm.ActionDelete, fsm.ActionRotate}
		}, true},
		{"user principal with expiry", func(p *fsm.Policy) { p.PrincipalType, p.ExpiresAt = fsm.PrincipalUser, baseTime+1 }, true},
		{"no id", func(p *fsm.Policy) { p.ID = "" }, false},
		{"no principal", func(p *fsm.Policy) { p.PrincipalID = "" }, false},
		{"no actions", func(p *fsm.Policy) { p.Actions = nil }, false},
		{"empty actions", func(p *fsm.Policy) { p.Actions = []fsm.Action{} }, false},
		{"both secret and pattern", func(p *fsm.Policy) { p.PathPattern = "prod/*" }, false},
		{"neither secret nor pattern", func(p *fsm.Policy) { p.SecretID = "" }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := fsm.New(nil)
			mustOK(t, f, fsm.CmdPutPolicy, &fsm.PutPolicy{Policy: policy("existing")})
			p := policy("p1")
			tc.mutate(&p)
			if !tc.ok {
				mustFail(t, f, fsm.CmdPutPolicy, &fsm.PutPolicy{Policy: p}, fsm.ErrInvalid)
				return
			}
			mustOK(t, f, fsm.CmdPutPolicy, &fsm.PutPolicy{Policy: p})
			got, ok := f.State().Policy("p1")
			if !ok || !reflect.DeepEqual(*got, p) {
				t.Errorf("stored policy = %+v, want %+v", got, p)
			}
		})
	}
}

func TestPolicyPutReplaceDelete(t *testing.T) {
	f := fsm.New(nil)
	for _, id := range []string{"p3", "p1", "p2"} {
		mustOK(t, f, fsm.CmdPutPolicy, &fsm.PutPolicy{Policy: policy(id)})
	}
	if got := policyIDs(f.State()); !slices.Equal(got, []string{"p1", "p2", "p3"}) {
		t.Errorf("policies in id order = %v", got)
	}
	// Early stop.
	var n int
	f.State().Policies(func(*fsm.Policy) bool { n++; return false })
	if n != 1 {
		t.Errorf("Policies visited %d after returning false", n)
	}

	// Put with an existing id replaces it; an older State keeps the old one.
	before := f.State()
	p := policy("p2")
	p.Actions = []fsm.Action{fsm.ActionWrite}
	p.SecretID, p.PathPattern = "", "dev/*"
	mustOK(t, f, fsm.CmdPutPolicy, &fsm.PutPolicy{Policy: p})
	got, _ := f.State().Policy("p2")
	if !reflect.DeepEqual(*got, p) {
		t.Errorf("replaced policy = %+v", got)
	}
	if old, _ := before.Policy("p2"); old.PathPattern != "" || old.Actions[0] != fsm.ActionRead {
		t.Errorf("older State sees the replacement: %+v", old)
	}
	if len(policyIDs(f.State())) != 3 {
		t.Errorf("replace added a policy: %v", policyIDs(f.State()))
	}

	mustOK(t, f, fsm.CmdDeletePolicy, &fsm.DeletePolicy{ID: "p2"})
	if _, ok := f.State().Policy("p2"); ok {
		t.Error("deleted policy still there")
	}
	if got := policyIDs(f.State()); !slices.Equal(got, []string{"p1", "p3"}) {
		t.Errorf("policies = %v", got)
	}
	mustFail(t, f, fsm.CmdDeletePolicy, &fsm.DeletePolicy{ID: "p2"}, fsm.ErrNotFound)
	mustFail(t, f, fsm.CmdDeletePolicy, &fsm.DeletePolicy{ID: ""}, fsm.ErrNotFound)

	// Policies and secrets are independent: purging a secret keeps its policies.
	put(t, f, "s1", "p")
	mustOK(t, f, fsm.CmdPurgeSecret, &fsm.PurgeSecret{SecretID: "s1"})
	if _, ok := f.State().Policy("p1"); !ok {
		t.Error("purge removed a policy")
	}
}

func auditBatch(start, n int) *fsm.AppendAudit {
	c := &fsm.AppendAudit{}
	for i := range n {
		k := start + i
		c.Records = append(c.Records, fsm.AuditRecord{
			ID: fmt.Sprintf("r%d", k), Seq: 999, // Apply assigns Seq; whatever the proposer put is ignored
			SecretID: "s1", Path: "p", PrincipalID: "svc-a", Action: "READ",
			Success: k%2 == 0, NodeID: "n1", AccessedAt: baseTime + int64(k),
		})
	}
	return c
}

func collectAudit(st *fsm.State, from uint64) []*fsm.AuditRecord {
	var out []*fsm.AuditRecord
	st.Audit(from, func(r *fsm.AuditRecord) bool { out = append(out, r); return true })
	return out
}

func TestAppendAudit(t *testing.T) {
	f := fsm.New(nil)
	batches := []int{3, 0, 1, 5, 2}
	total := 0
	for _, n := range batches {
		res := mustOK(t, f, fsm.CmdAppendAudit, auditBatch(total, n))
		total += n
		if res.AuditSeq != uint64(total) || f.State().AuditSeq() != uint64(total) {
			t.Fatalf("after batch of %d: result seq %d, state seq %d, want %d", n, res.AuditSeq, f.State().AuditSeq(), total)
		}
	}
	st := f.State()
	recs := collectAudit(st, 0)
	if len(recs) != total {
		t.Fatalf("%d records, want %d", len(recs), total)
	}
	for i, r := range recs {
		if r.Seq != uint64(i+1) || r.ID != fmt.Sprintf("r%d", i) || r.AccessedAt != baseTime+int64(i) {
			t.Errorf("record %d = %+v", i, r)
		}
	}
	tests := []struct {
		from uint64
		want []uint64
	}{
		{0, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}},
		{1, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}},
		{4, []uint64{4, 5, 6, 7, 8, 9, 10, 11}},
		{11, []uint64{11}},
		{12, nil},
		{1 << 40, nil},
	}
	for _, tc := range tests {
		var got []uint64
		for _, r := range collectAudit(st, tc.from) {
			got = append(got, r.Seq)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("Audit(%d) = %v, want %v", tc.from, got, tc.want)
		}
	}
	// Early stop.
	var n int
	st.Audit(3, func(r *fsm.AuditRecord) bool { n++; return r.Seq < 5 })
	if n != 3 {
		t.Errorf("Audit visited %d records, want 3", n)
	}
	// Audit appends leave secrets alone, and older States keep their shorter log.
	if st.SecretCount() != 0 {
		t.Error("audit created secrets")
	}
	mustOK(t, f, fsm.CmdAppendAudit, auditBatch(total, 1))
	if got := len(collectAudit(st, 0)); got != total {
		t.Errorf("older State sees %d records", got)
	}
}

func TestAuditSeqSurvivesFailedCommands(t *testing.T) {
	f := fsm.New(nil)
	mustOK(t, f, fsm.CmdAppendAudit, auditBatch(0, 2))
	mustFail(t, f, fsm.CmdDeleteSecret, &fsm.DeleteSecret{SecretID: "nope"}, fsm.ErrNotFound)
	put(t, f, "s1", "p")
	res := mustOK(t, f, fsm.CmdAppendAudit, auditBatch(2, 1))
	if res.AuditSeq != 3 {
		t.Errorf("seq %d, want 3", res.AuditSeq)
	}
}
