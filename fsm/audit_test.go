package fsm_test

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/keyward/keyward/fsm"
)

// auditLines builds an AppendAuditLines of node's records with NodeSeq from..to, in the form a
// serving node writes them.
func auditLines(node string, from, to uint64) *fsm.AppendAuditLines {
	c := &fsm.AppendAuditLines{NodeID: node}
	for s := from; s <= to; s++ {
		r := fsm.AuditRecord{ID: fmt.Sprintf("%s-%d", node, s), NodeID: node, NodeSeq: s, Path: "a/<b>",
			PrincipalID: "svc", Action: "READ", Success: s%3 != 0, AccessedAt: baseTime + int64(s)}
		c.AppendLine(s, fsm.CanonicalAudit(r))
	}
	return c
}

func batches(st *fsm.State) []fsm.AuditBatch {
	var out []fsm.AuditBatch
	st.AuditBatches(0, func(b *fsm.AuditBatch) bool { out = append(out, *b); return true })
	return out
}

// verifyChain recomputes every batch hash from the decoded records, as `audit verify` does.
func verifyChain(t *testing.T, st *fsm.State) {
	t.Helper()
	prev := ""
	for _, b := range batches(st) {
		var recs []fsm.AuditRecord
		st.Audit(b.First, func(r *fsm.AuditRecord) bool {
			if r.Seq > b.Last {
				return false
			}
			if r.Batch != b.Seq {
				t.Errorf("record %d names batch %d, is in %d", r.Seq, r.Batch, b.Seq)
			}
			recs = append(recs, *r)
			return true
		})
		if uint64(len(recs)) != b.Last-b.First+1 {
			t.Fatalf("batch %d: %d records, want %d", b.Seq, len(recs), b.Last-b.First+1)
		}
		if b.Prev != prev || fsm.ChainHash(b.Prev, recs) != b.Hash {
			t.Fatalf("batch %d does not verify", b.Seq)
		}
		prev = b.Hash
	}
}

func TestAppendAuditLines(t *testing.T) {
	f := fsm.New(nil)
	mustOK(t, f, fsm.CmdAppendAuditLines, auditLines("n1", 1, 3))
	mustOK(t, f, fsm.CmdAppendAuditLines, auditLines("n2", 1, 2))
	// A re-shipped batch overlapping what is committed keeps only the new records.
	res := mustOK(t, f, fsm.CmdAppendAuditLines, auditLines("n1", 2, 5))
	if res.AuditSeq != 7 {
		t.Errorf("audit seq %d, want 7", res.AuditSeq)
	}
	// Entirely old: nothing changes, no empty batch.
	mustOK(t, f, fsm.CmdAppendAuditLines, auditLines("n2", 1, 2))
	// The first form of the command still applies and joins the same chain.
	mustOK(t, f, fsm.CmdAppendAudit, &fsm.AppendAudit{Records: []fsm.AuditRecord{
		{ID: "legacy", NodeID: "n3", NodeSeq: 1, PrincipalID: "u", Action: "WRITE", AccessedAt: baseTime}}})

	st := f.State()
	var ids []string
	for _, r := range collectAudit(st, 0) {
		ids = append(ids, r.ID)
	}
	want := []string{"n1-1", "n1-2", "n1-3", "n2-1", "n2-2", "n1-4", "n1-5", "legacy"}
	if !slices.Equal(ids, want) {
		t.Fatalf("records %v, want %v", ids, want)
	}
	if got := len(batches(st)); got != 4 {
		t.Errorf("%d batches, want 4", got)
	}
	if st.AuditCommitted("n1") != 5 || st.AuditCommitted("n2") != 2 || st.AuditCommitted("n3") != 1 {
		t.Errorf("marks n1=%d n2=%d n3=%d", st.AuditCommitted("n1"), st.AuditCommitted("n2"), st.AuditCommitted("n3"))
	}
	// Reading from the middle of a block starts at that record.
	var seqs []uint64
	st.Audit(5, func(r *fsm.AuditRecord) bool { seqs = append(seqs, r.Seq); return true })
	if !slices.Equal(seqs, []uint64{5, 6, 7, 8}) {
		t.Errorf("Audit(5) = %v", seqs)
	}
	verifyChain(t, st)

	// The chain survives a snapshot round trip.
	var buf bytes.Buffer
	if err := fsm.WriteSnapshot(&buf, st); err != nil {
		t.Fatal(err)
	}
	back, err := fsm.ReadSnapshot(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(collectAudit(back, 0), collectAudit(st, 0), func(a, b *fsm.AuditRecord) bool { return *a == *b }) {
		t.Error("records differ after a snapshot round trip")
	}
	verifyChain(t, back)
}

func TestAppendAuditLinesMalformed(t *testing.T) {
	good := auditLines("n1", 1, 2)
	for name, c := range map[string]*fsm.AppendAuditLines{
		"no node":         {Seqs: good.Seqs, Data: good.Data},
		"no records":      {NodeID: "n1"},
		"count mismatch":  {NodeID: "n1", Seqs: []uint64{1}, Data: good.Data},
		"no final LF":     {NodeID: "n1", Seqs: []uint64{1, 2}, Data: bytes.TrimSuffix(good.Data, []byte{'\n'})},
		"seqs not rising": {NodeID: "n1", Seqs: []uint64{2, 2}, Data: good.Data},
	} {
		t.Run(name, func(t *testing.T) {
			mustFail(t, fsm.New(nil), fsm.CmdAppendAuditLines, c, fsm.ErrInvalid)
		})
	}
}

// A compressed batch commits exactly what the plain one does: same records, same chain.
func TestAppendAuditZstd(t *testing.T) {
	zip, err := fsm.NewAuditCompressor()
	if err != nil {
		t.Fatal(err)
	}
	plain, packed := fsm.New(nil), fsm.New(nil)
	for _, c := range []*fsm.AppendAuditLines{auditLines("n1", 1, 200), auditLines("n2", 1, 3), auditLines("n1", 150, 260)} {
		mustOK(t, plain, fsm.CmdAppendAuditLines, c)
		cmd := zip.Encode(c)
		if len(cmd) >= len(c.Data) && len(c.Seqs) > 100 {
			t.Errorf("%d records: %d bytes of lines encoded as %d", len(c.Seqs), len(c.Data), len(cmd))
		}
		res, err := packed.ApplyCommand(packed.AppliedIndex()+1, cmd)
		if err != nil || res.Err != nil {
			t.Fatalf("apply compressed batch: %v, %v", err, res.Err)
		}
	}
	if !slices.Equal(batches(plain.State()), batches(packed.State())) {
		t.Errorf("chains differ:\n%v\n%v", batches(plain.State()), batches(packed.State()))
	}
	if !slices.EqualFunc(collectAudit(plain.State(), 0), collectAudit(packed.State(), 0),
		func(a, b *fsm.AuditRecord) bool { return *a == *b }) {
		t.Error("records differ")
	}
	verifyChain(t, packed.State())

	// The packed state keeps the frames: its snapshot is smaller, and it round-trips.
	plainSnap, packedSnap := snapshotBytes(t, plain.State()), snapshotBytes(t, packed.State())
	if len(packedSnap) >= len(plainSnap) {
		t.Errorf("snapshot of the compressed batches: %d bytes, plain: %d", len(packedSnap), len(plainSnap))
	}
	back, err := fsm.ReadSnapshot(bytes.NewReader(packedSnap))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(collectAudit(back, 0), collectAudit(plain.State(), 0),
		func(a, b *fsm.AuditRecord) bool { return *a == *b }) {
		t.Error("records differ after a snapshot round trip")
	}
	if !bytes.Equal(snapshotBytes(t, back), packedSnap) {
		t.Error("a restored state writes a different snapshot")
	}
	verifyChain(t, back)

	// Reading from the middle of a compressed block starts at that record.
	if !slices.EqualFunc(collectAudit(packed.State(), 100), collectAudit(plain.State(), 100),
		func(a, b *fsm.AuditRecord) bool { return *a == *b }) || collectAudit(packed.State(), 100)[0].Seq != 100 {
		t.Error("Audit(100) differs between the compressed and the plain state")
	}

	// A node restored from the snapshot goes on exactly like the one that wrote it.
	restored := fsm.New(nil)
	if err := restored.Restore(nopCloser(packedSnap)); err != nil {
		t.Fatal(err)
	}
	next := zip.Encode(auditLines("n2", 4, 50))
	for _, f := range []*fsm.FSM{packed, restored} {
		if res, err := f.ApplyCommand(f.AppliedIndex()+1, next); err != nil || res.Err != nil {
			t.Fatalf("apply after restore: %v, %v", err, res.Err)
		}
	}
	if !bytes.Equal(snapshotBytes(t, restored.State()), snapshotBytes(t, packed.State())) {
		t.Error("the restored node's state differs after the same command")
	}
	mustOK(t, plain, fsm.CmdAppendAuditLines, auditLines("n2", 4, 50))

	// Pruning reads the newest record of a compressed block like that of a plain one.
	prune := &fsm.PruneAudit{Before: baseTime + 201} // drops the first two batches
	mustOK(t, plain, fsm.CmdPruneAudit, prune)
	mustOK(t, packed, fsm.CmdPruneAudit, prune)
	if !slices.EqualFunc(collectAudit(plain.State(), 0), collectAudit(packed.State(), 0),
		func(a, b *fsm.AuditRecord) bool { return *a == *b }) || len(collectAudit(packed.State(), 0)) != 107 {
		t.Errorf("pruning left %d records, want the 107 of the last two batches", len(collectAudit(packed.State(), 0)))
	}

	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	lines := auditLines("n3", 1, 5)
	frame := enc.EncodeAll(lines.Data, nil)
	for name, data := range map[string][]byte{
		"corrupt frame": frame[:len(frame)-4],
		"not zstd":      lines.Data,
		"bad lines":     enc.EncodeAll(bytes.TrimSuffix(lines.Data, []byte{'\n'}), nil),
	} {
		t.Run(name, func(t *testing.T) {
			mustFail(t, packed, fsm.CmdAppendAuditZstd, &fsm.AppendAuditLines{NodeID: "n3", Seqs: lines.Seqs, Data: data}, fsm.ErrInvalid)
		})
	}
}

func TestPruneAuditBlocks(t *testing.T) {
	f := fsm.New(nil)
	mustOK(t, f, fsm.CmdAppendAuditLines, auditLines("n1", 1, 3))  // newest at baseTime+3
	mustOK(t, f, fsm.CmdAppendAuditLines, auditLines("n1", 4, 6))  // newest at baseTime+6
	mustOK(t, f, fsm.CmdAppendAuditLines, auditLines("n1", 7, 10)) // kept: the head
	mustOK(t, f, fsm.CmdPruneAudit, &fsm.PruneAudit{Before: baseTime + 5})
	st := f.State()
	if got := collectAudit(st, 0); len(got) != 7 || got[0].Seq != 4 {
		t.Fatalf("after prune: %d records from %d, want 7 from 4", len(got), got[0].Seq)
	}
	mustOK(t, f, fsm.CmdPruneAudit, &fsm.PruneAudit{Before: baseTime + 100})
	if got := collectAudit(f.State(), 0); len(got) != 4 || got[0].Seq != 7 {
		t.Fatalf("after second prune: %d records, want the newest batch's 4", len(got))
	}
}

// A write carrying its audit record commits it with the version when it succeeds, and not at
// all when it fails.
func TestPutVersionCommitsItsAuditRecord(t *testing.T) {
	f := fsm.New(nil)
	c := putCmd("s1", "p", 0)
	c.Audit = &fsm.AuditRecord{ID: "a1", NodeID: "n2", NodeSeq: 9, SecretID: "s1", Path: "p", VersionID: c.VersionID,
		PrincipalID: "alice", Action: "WRITE", Success: false, Reason: "ignored", AccessedAt: baseTime}
	res := mustOK(t, f, fsm.CmdPutVersion, c)
	if res.AuditSeq != 1 {
		t.Errorf("result audit seq %d, want 1", res.AuditSeq)
	}
	recs := collectAudit(f.State(), 0)
	if len(recs) != 1 || recs[0].ID != "a1" || !recs[0].Success || recs[0].Reason != "" || recs[0].NodeSeq != 0 || recs[0].Seq != 1 {
		t.Fatalf("records %+v", recs)
	}
	if f.State().AuditCommitted("n2") != 0 {
		t.Error("a write's record moved the node's shipping mark")
	}
	verifyChain(t, f.State())

	stale := putCmd("s1", "p", 0) // version 1 exists: conflict
	stale.Audit = &fsm.AuditRecord{ID: "a2", PrincipalID: "alice", Action: "WRITE", AccessedAt: baseTime}
	mustFail(t, f, fsm.CmdPutVersion, stale, fsm.ErrConflict)
	if n := len(collectAudit(f.State(), 0)); n != 1 {
		t.Errorf("%d records after a failed write, want 1", n)
	}
}
