package audit

import (
	"slices"
	"testing"
)

// A batch whose ship failed keeps only the records the cluster has not committed meanwhile.
func TestPendingDropThrough(t *testing.T) {
	var p pending
	for seq := uint64(5); seq <= 8; seq++ {
		p.batch.AppendLine(seq, []byte{'a' + byte(seq-5)})
	}
	p.dropThrough(4) // nothing of it committed
	if p.len() != 4 {
		t.Fatalf("%d records after dropping none", p.len())
	}
	p.dropThrough(6)
	if !slices.Equal(p.batch.Seqs, []uint64{7, 8}) || string(p.batch.Data) != "c\nd\n" {
		t.Fatalf("after dropping through 6: seqs %v, data %q", p.batch.Seqs, p.batch.Data)
	}
	p.dropThrough(8)
	if p.len() != 0 || len(p.batch.Data) != 0 {
		t.Fatalf("after dropping all: seqs %v, data %q", p.batch.Seqs, p.batch.Data)
	}
}
