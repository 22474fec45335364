package fsm

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// CmdAppendAuditLines commits a batch of one node's audit records as the node encoded them.
const CmdAppendAuditLines CommandType = 33

// AppendAuditLines carries a batch of audit records of one node in their canonical JSON
// (CanonicalAudit), each followed by a line feed, exactly as the serving node made them
// durable. Apply neither decodes nor re-encodes them: it drops the ones already committed, hashes the
// rest into the chain and keeps the bytes; records are decoded only when read.
type AppendAuditLines struct {
	NodeID string   `json:"node_id"`
	Seqs   []uint64 `json:"seqs"` // NodeSeq of each line, increasing
	Data   []byte   `json:"-"`    // the lines
}

func (p *AppendAuditLines) blobs() [][]byte { return [][]byte{p.Data} }

func (p *AppendAuditLines) setBlobs(b [][]byte) error {
	if len(b) != 1 {
		return fmt.Errorf("audit lines carry %d blobs, want 1", len(b))
	}
	p.Data = b[0]
	return nil
}

// AppendLine adds one record's canonical JSON (without a line feed) with its NodeSeq.
func (p *AppendAuditLines) AppendLine(seq uint64, canonical []byte) {
	p.Seqs = append(p.Seqs, seq)
	p.Data = append(append(p.Data, canonical...), '\n')
}

// Records decodes the lines (for tools and tests).
func (p *AppendAuditLines) Records() ([]AuditRecord, error) {
	var out []AuditRecord
	for data := p.Data; len(data) > 0; {
		line, rest, ok := bytes.Cut(data, []byte{'\n'})
		if !ok {
			return nil, fmt.Errorf("%w: audit line without a line feed", ErrInvalid)
		}
		var r AuditRecord
		if err := json.Unmarshal(line, &r); err != nil {
			return nil, fmt.Errorf("%w: audit line: %v", ErrInvalid, err)
		}
		out = append(out, r)
		data = rest
	}
	return out, nil
}

// CanonicalAudit is the form of a record the hash chain covers: its JSON (encoding/json, fields
// in declaration order) without Seq and Batch, which Apply assigns. A serving node's audit log
// holds records in exactly this form, so they travel and are kept without re-encoding.
func CanonicalAudit(r AuditRecord) []byte {
	r.Seq, r.Batch = 0, 0
	return AppendAuditJSON(nil, &r)
}

// ChainHash links a batch of audit records to the previous batch: hex SHA-256 of the previous
// hash and a line feed, followed by each record's CanonicalAudit form and a line feed.
// `keyward audit verify` recomputes it.
func ChainHash(prev string, recs []AuditRecord) string {
	var lines []byte
	for i := range recs {
		lines = append(append(lines, CanonicalAudit(recs[i])...), '\n')
	}
	return chainHashLines(prev, lines)
}

// chainHashLines is ChainHash of records given as their canonical lines.
func chainHashLines(prev string, lines []byte) string {
	h := sha256.New()
	h.Write([]byte(prev))
	h.Write([]byte{'\n'})
	h.Write(lines)
	return hex.EncodeToString(h.Sum(nil))
}

// auditBlock holds the records of one committed batch as canonical JSON lines; they are
// decoded only when read, so committing a record costs a hash and a copy, and holding it costs
// its bytes, not a struct of strings. A batch that came compressed (CmdAppendAuditZstd) is kept
// compressed.
type auditBlock struct {
	First uint64 `json:"first"` // Seq of the first record
	Count uint64 `json:"count"`
	Batch uint64 `json:"batch"`
	Data  []byte `json:"data"` // Count lines; with Zstd, one zstd frame of them
	// Zstd is carried by the snapshot record's key (snapRecord.ZBlock), not by a field, so that
	// a node that predates it fails on such a snapshot instead of misreading the frame.
	Zstd bool `json:"-"`
}

// lines returns the block's lines, decompressing them with u (nil: a decoder made for the
// call) if the block is compressed. The caller must not change them. A frame that does not
// decompress (it never should: Apply checked it) yields no lines, so each reports every record
// of the block as undecodable.
func (b *auditBlock) lines(u *unzipper) []byte {
	if !b.Zstd {
		return b.Data
	}
	if u == nil {
		u = &unzipper{}
	}
	out, err := u.blockLines(b)
	if err != nil {
		return nil
	}
	return out
}

func auditBlockLess(a, b *auditBlock) bool { return a.First < b.First }

// each decodes the block's records in order, calling fn until it returns false; it reports
// whether fn always returned true. A line that does not decode (it never should: nodes write
// canonical JSON) yields a record that names the problem, so listing and verification show
// it instead of silently skipping it.
func (b *auditBlock) each(u *unzipper, fn func(*AuditRecord) bool) bool {
	data := b.lines(u)
	for i := uint64(0); i < b.Count; i++ {
		line, rest, _ := bytes.Cut(data, []byte{'\n'})
		data = rest
		r := new(AuditRecord)
		if err := json.Unmarshal(line, r); err != nil {
			*r = AuditRecord{Action: "UNDECODABLE", Reason: "stored audit record does not decode"}
		}
		r.Seq, r.Batch = b.First+i, b.Batch
		if !fn(r) {
			return false
		}
	}
	return true
}

// last decodes the block's last record.
func (b *auditBlock) last(u *unzipper) (AuditRecord, bool) {
	data := bytes.TrimSuffix(b.lines(u), []byte{'\n'})
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[i+1:]
	}
	var r AuditRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return r, false
	}
	return r, true
}

// Audit calls fn for every audit record with sequence number >= from, in order, until fn
// returns false.
func (s *State) Audit(from uint64, fn func(*AuditRecord) bool) {
	start := &auditBlock{First: from}
	s.audit.DescendLessOrEqual(start, func(b *auditBlock) bool { start = b; return false })
	s.audit.AscendGreaterOrEqual(start, func(b *auditBlock) bool {
		return b.each(s.unzip, func(r *AuditRecord) bool { return r.Seq < from || fn(r) })
	})
}

// withAudit makes fn commit the audit record a command carries (rec returns it, or nil), as a
// batch of its own, when the command succeeds.
func withAudit[P any](fn func(*txn, *P) *Result, rec func(*P) *AuditRecord) func(*txn, *P) *Result {
	return func(tx *txn, c *P) *Result {
		res := fn(tx, c)
		if r := rec(c); r != nil && res.Err == nil {
			a := *r
			a.Success, a.Reason, a.NodeSeq = true, "", 0
			// Kept for as long as the record is: a copy of exactly its size, not the grown buffer.
			tx.commitAuditBlock(bytes.Clone(append(CanonicalAudit(a), '\n')), nil, 1, nil)
			res.AuditSeq = tx.auditSeq
		}
		return res
	}
}

func applyAppendAuditLines(tx *txn, c *AppendAuditLines) *Result {
	return appendAuditLines(tx, c, nil)
}

// appendAuditLines commits the lines of c not committed yet. packed, when not nil, is the
// zstd frame of all of c's lines: the block keeps it if every line commits.
func appendAuditLines(tx *txn, c *AppendAuditLines, packed []byte) *Result {
	if c.NodeID == "" || len(c.Seqs) == 0 || bytes.Count(c.Data, []byte{'\n'}) != len(c.Seqs) ||
		c.Data[len(c.Data)-1] != '\n' {
		return fail(fmt.Errorf("%w: malformed audit lines", ErrInvalid))
	}
	for i := 1; i < len(c.Seqs); i++ {
		if c.Seqs[i] <= c.Seqs[i-1] {
			return fail(fmt.Errorf("%w: audit lines out of order", ErrInvalid))
		}
	}
	// Drop the records already committed: a node re-ships what it cannot prove was committed.
	hwm := tx.auditMark(c.NodeID)
	data, seqs := c.Data, c.Seqs
	for len(seqs) > 0 && seqs[0] <= hwm {
		data = data[bytes.IndexByte(data, '\n')+1:]
		seqs = seqs[1:]
	}
	if len(seqs) == 0 {
		return &Result{AuditSeq: tx.auditSeq}
	}
	if len(data) != len(c.Data) {
		data = bytes.Clone(data) // do not pin the dropped prefix
		packed = nil             // the frame holds the dropped records too
	}
	tx.commitAuditBlock(data, packed, uint64(len(seqs)), map[string]uint64{c.NodeID: seqs[len(seqs)-1]})
	return &Result{AuditSeq: tx.auditSeq}
}

// applyAppendAudit commits records sent as JSON structs, possibly of several nodes (the first
// form of the command, kept so that existing logs replay).
func applyAppendAudit(tx *txn, c *AppendAudit) *Result {
	var data []byte
	var n uint64
	marks := map[string]uint64{}
	for _, r := range c.Records {
		hwm, seen := marks[r.NodeID]
		if !seen {
			hwm = tx.auditMark(r.NodeID)
		}
		if r.NodeID != "" && r.NodeSeq != 0 && r.NodeSeq <= hwm {
			marks[r.NodeID] = hwm
			continue
		}
		marks[r.NodeID] = max(hwm, r.NodeSeq)
		data = append(append(data, CanonicalAudit(r)...), '\n')
		n++
	}
	if n == 0 {
		return &Result{AuditSeq: tx.auditSeq}
	}
	tx.commitAuditBlock(data, nil, n, marks)
	return &Result{AuditSeq: tx.auditSeq}
}

func (t *txn) auditMark(node string) uint64 {
	if m, ok := getObject[AuditMark](t.objs(), KindAuditMark, node); ok {
		return m.Seq
	}
	return 0
}

// commitAuditBlock appends n records (data: their canonical lines) as the next batch of the
// chain and raises the per-node marks. The block keeps packed, the zstd frame of data, when
// it is not nil, and data otherwise.
func (t *txn) commitAuditBlock(data, packed []byte, n uint64, marks map[string]uint64) {
	var prev AuditBatch
	t.objs().DescendLessOrEqual(&object{Kind: KindAuditBatch, Key: batchKey(^uint64(0))}, func(o *object) bool {
		if b, ok := o.Value.(*AuditBatch); ok && o.Kind == KindAuditBatch {
			prev = *b
		}
		return false
	})
	batch := &AuditBatch{Seq: prev.Seq + 1, Prev: prev.Hash, First: t.auditSeq + 1, Last: t.auditSeq + n}
	batch.Hash = chainHashLines(batch.Prev, data)
	t.auditSeq += n
	blk := &auditBlock{First: batch.First, Count: n, Batch: batch.Seq, Data: data}
	if packed != nil {
		blk.Data, blk.Zstd = packed, true
	}
	t.auditTree().ReplaceOrInsert(blk)
	t.putObject(KindAuditBatch, batchKey(batch.Seq), batch)
	for node, seq := range marks {
		if node != "" && seq != 0 {
			t.putObject(KindAuditMark, node, &AuditMark{NodeID: node, Seq: seq})
		}
	}
}

func applyPruneAudit(tx *txn, c *PruneAudit) *Result {
	var batches []*AuditBatch
	tx.objs().AscendGreaterOrEqual(&object{Kind: KindAuditBatch}, func(o *object) bool {
		b, ok := o.Value.(*AuditBatch)
		if o.Kind != KindAuditBatch || !ok {
			return false
		}
		batches = append(batches, b)
		return true
	})
	at := tx.base.audit
	if tx.audit != nil {
		at = tx.audit
	}
	// Keep at least the newest batch, so the chain always has a head to append to.
	for i, b := range batches {
		if i == len(batches)-1 {
			break
		}
		blk, ok := at.Get(&auditBlock{First: b.First})
		if !ok {
			break
		}
		if last, ok := blk.last(tx.unzipper()); !ok || last.AccessedAt >= c.Before {
			break
		}
		tx.auditTree().Delete(blk)
		tx.deleteObject(KindAuditBatch, batchKey(b.Seq))
	}
	return &Result{AuditSeq: tx.auditSeq}
}
