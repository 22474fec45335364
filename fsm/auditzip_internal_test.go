package fsm

import (
	"strings"
	"sync"
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

// Readers of compressed blocks run concurrently with each other and with Apply (run with -race).
func TestCompressedBlocksReadConcurrently(t *testing.T) {
	zip, err := NewAuditCompressor()
	if err != nil {
		t.Fatal(err)
	}
	batch := func(from, to uint64) []byte {
		c := &AppendAuditLines{NodeID: "n1"}
		for s := from; s <= to; s++ {
			c.AppendLine(s, CanonicalAudit(AuditRecord{ID: "id", NodeID: "n1", NodeSeq: s, Action: "READ", AccessedAt: int64(s)}))
		}
		return zip.Encode(c)
	}
	f := New(nil)
	for i := uint64(0); i < 4; i++ {
		if _, err := f.ApplyCommand(f.AppliedIndex()+1, batch(i*100+1, i*100+100)); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				st, from := f.State(), uint64(r*50+1)
				n, next := 0, from
				st.Audit(from, func(rec *AuditRecord) bool {
					if rec.Seq != next || rec.NodeSeq != rec.Seq {
						t.Errorf("reader from %d: record %d (node seq %d), want %d", from, rec.Seq, rec.NodeSeq, next)
						return false
					}
					n, next = n+1, next+1
					return true
				})
				if uint64(n) < 400-from+1 {
					t.Errorf("reader from %d saw %d records", from, n)
					return
				}
			}
		}()
	}
	for i := uint64(4); i < 8; i++ {
		if _, err := f.ApplyCommand(f.AppliedIndex()+1, batch(i*100+1, i*100+100)); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}

// A compressed block whose frame does not decompress shows its records as undecodable.
func TestCorruptCompressedBlock(t *testing.T) {
	zip, err := NewAuditCompressor()
	if err != nil {
		t.Fatal(err)
	}
	c := &AppendAuditLines{NodeID: "n1"}
	for s := uint64(1); s <= 3; s++ {
		c.AppendLine(s, CanonicalAudit(AuditRecord{ID: "id", NodeID: "n1", NodeSeq: s, Action: "READ"}))
	}
	f := New(nil)
	if _, err := f.ApplyCommand(1, zip.Encode(c)); err != nil {
		t.Fatal(err)
	}
	var blk *auditBlock
	f.State().audit.Ascend(func(b *auditBlock) bool { blk = b; return false })
	bad := *blk
	bad.Data = append([]byte(nil), blk.Data...)
	bad.Data[len(bad.Data)/2] ^= 0xff
	var actions []string
	bad.each(nil, func(r *AuditRecord) bool { actions = append(actions, r.Action); return true })
	if len(actions) != 3 || actions[0] != "UNDECODABLE" || actions[2] != "UNDECODABLE" {
		t.Errorf("records of a corrupt block: %v, want 3 UNDECODABLE", actions)
	}
}
