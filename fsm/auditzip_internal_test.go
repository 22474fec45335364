package fsm

import (
	"strings"
	"testing"
)

// A compressed batch that commits whole is kept as its frame; a batch of which some records
// were committed before is kept as the plain lines of the rest.
func TestCompressedBatchIsKeptCompressed(t *testing.T) {
	zip, err := NewAuditCompressor()
	if err != nil {
		t.Fatal(err)
	}
	lines := func(from, to uint64) *AppendAuditLines {
		c := &AppendAuditLines{NodeID: "n1"}
		for s := from; s <= to; s++ {
			c.AppendLine(s, CanonicalAudit(AuditRecord{ID: "id", NodeID: "n1", NodeSeq: s, Path: "p/" + strings.Repeat("x", 40),
				PrincipalID: "svc", Action: "READ", Success: true, AccessedAt: int64(s)}))
		}
		return c
	}
	f := New(nil)
	whole, overlap := lines(1, 500), lines(400, 600)
	for _, c := range []*AppendAuditLines{whole, overlap} {
		if _, err := f.ApplyCommand(f.AppliedIndex()+1, zip.Encode(c)); err != nil {
			t.Fatal(err)
		}
	}
	var blocks []*auditBlock
	f.State().audit.Ascend(func(b *auditBlock) bool { blocks = append(blocks, b); return true })
	if len(blocks) != 2 {
		t.Fatalf("%d blocks, want 2", len(blocks))
	}
	if b := blocks[0]; !b.Zstd || len(b.Data)*5 > len(whole.Data) {
		t.Errorf("whole batch: compressed %v, %d bytes for %d bytes of lines", b.Zstd, len(b.Data), len(whole.Data))
	}
	if b := blocks[1]; b.Zstd || b.Count != 100 {
		t.Errorf("overlapping batch: compressed %v, %d records; want plain, 100", b.Zstd, b.Count)
	}
}
