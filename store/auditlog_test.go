package store

import (
	"testing"

	"github.com/keyward/keyward/fsm"
)

// TestAuditRetentionKeepsAVerifiableChain: pruning drops old batches and their records; what
// remains still verifies, anchored on the first remaining batch.
func TestAuditRetentionKeepsAVerifiableChain(t *testing.T) {
	f := fsm.New(nil)
	idx := uint64(0)
	apply := func(ct fsm.CommandType, p any) {
		t.Helper()
		idx++
		if res, err := f.ApplyCommand(idx, fsm.MustEncode(ct, p)); err != nil || res.Err != nil {
			t.Fatalf("apply: %v %v", err, res)
		}
	}
	for b := 0; b < 4; b++ {
		var recs []fsm.AuditRecord
		for i := 0; i < 3; i++ {
			recs = append(recs, fsm.AuditRecord{ID: "r", NodeID: "n1", NodeSeq: uint64(b*3 + i + 1),
				PrincipalID: "p", Action: "READ", Success: true, AccessedAt: int64(b*100 + i)})
		}
		apply(fsm.CmdAppendAudit, fsm.AppendAudit{Records: recs})
	}
	export := func() []AuditExportLine {
		st := f.State()
		var lines []AuditExportLine
		st.AuditBatches(1, func(b *fsm.AuditBatch) bool {
			lines = append(lines, AuditExportLine{Batch: b})
			st.Audit(b.First, func(r *fsm.AuditRecord) bool {
				if r.Seq > b.Last {
					return false
				}
				lines = append(lines, AuditExportLine{Record: r})
				return true
			})
			return true
		})
		return lines
	}
	if rep := VerifyChain(export()); !rep.OK || rep.Batches != 4 || rep.Records != 12 {
		t.Fatalf("before pruning: %+v", rep)
	}
	apply(fsm.CmdPruneAudit, fsm.PruneAudit{Before: 150}) // batches 1 and 2 end before 150
	rep := VerifyChain(export())
	if !rep.OK || rep.Batches != 2 || rep.Records != 6 {
		t.Fatalf("after pruning: %+v", rep)
	}
	apply(fsm.CmdPruneAudit, fsm.PruneAudit{Before: 1 << 40}) // the newest batch always stays
	if rep := VerifyChain(export()); !rep.OK || rep.Batches != 1 {
		t.Fatalf("after pruning everything: %+v", rep)
	}
	// Re-shipped records are dropped, not committed twice.
	apply(fsm.CmdAppendAudit, fsm.AppendAudit{Records: []fsm.AuditRecord{{NodeID: "n1", NodeSeq: 12, PrincipalID: "p", Action: "READ"}}})
	if f.State().AuditSeq() != 12 {
		t.Fatalf("a duplicate was committed: seq %d", f.State().AuditSeq())
	}
}

// TestVerifyChainTrailer: an export cut off at a batch boundary fails against its trailer.
func TestVerifyChainTrailer(t *testing.T) {
	recs := []fsm.AuditRecord{{Seq: 1, Batch: 1, PrincipalID: "p", Action: "READ"}}
	b1 := &fsm.AuditBatch{Seq: 1, First: 1, Last: 1, Hash: fsm.ChainHash("", recs)}
	recs2 := []fsm.AuditRecord{{Seq: 2, Batch: 2, PrincipalID: "p", Action: "READ"}}
	b2 := &fsm.AuditBatch{Seq: 2, First: 2, Last: 2, Prev: b1.Hash, Hash: fsm.ChainHash(b1.Hash, recs2)}
	full := []AuditExportLine{{Batch: b1}, {Record: &recs[0]}, {Batch: b2}, {Record: &recs2[0]},
		{End: &AuditExportEnd{Batches: 2, Records: 2, Head: b2.Hash}}}
	if rep := VerifyChain(full); !rep.OK {
		t.Fatalf("full export: %+v", rep)
	}
	cut := append(append([]AuditExportLine{}, full[:2]...), full[4])
	if rep := VerifyChain(cut); rep.OK {
		t.Fatalf("an export missing its last batch verified: %+v", rep)
	}
}
