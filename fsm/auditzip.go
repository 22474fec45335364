package fsm

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// CmdAppendAuditZstd is CmdAppendAuditLines with the batch's lines compressed into one zstd
// frame. Audit lines repeat most of their bytes (field names, node, principal, paths and ids
// of hot secrets), so a batch shrinks about tenfold: that much less to replicate and to write
// to every node's Raft log. Apply decompresses to check the lines and to hash them into the
// chain (which covers the plain lines, as for the plain command), and then keeps the frame
// itself, so the records also take a tenth of the memory; readers decompress a block when
// they read it. It is a command type of its own so that a node which predates it stops on it
// instead of misreading the batch.
const CmdAppendAuditZstd CommandType = 34

// maxAuditBatchBytes bounds the decompressed lines of one batch (a node ships at most 4096
// records per batch, each one or two kilobytes at most).
const maxAuditBatchBytes = 64 << 20

// AuditCompressor encodes batches of audit lines as CmdAppendAuditZstd commands. It is safe
// for concurrent use.
type AuditCompressor struct{ enc *zstd.Encoder }

// NewAuditCompressor returns a compressor tuned for speed: a batch is compressed once, on the
// node that ships it, while every node pays for its size.
func NewAuditCompressor() (*AuditCompressor, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, fmt.Errorf("audit compressor: %w", err)
	}
	return &AuditCompressor{enc: enc}, nil
}

// Encode returns the CmdAppendAuditZstd command carrying p, a batch of plain lines.
func (c *AuditCompressor) Encode(p *AppendAuditLines) []byte {
	z := *p
	z.Data = c.enc.EncodeAll(p.Data, nil)
	return MustEncode(CmdAppendAuditZstd, &z)
}

// unzipper decompresses audit batches. Apply has one of its own (FSM), so that readers never
// hold it up; the readers of the blocks kept compressed share another, which every State
// derived from one empty state carries. It is safe for concurrent use and makes its decoder on
// first use. It remembers the lines of the block it decompressed last, because paging through
// the audit log reads the same block again for every page that starts in it.
type unzipper struct {
	once sync.Once
	dec  *zstd.Decoder
	err  error

	mu       sync.Mutex
	lastBlk  *auditBlock // the block whose lines lastData are
	lastData []byte
}

// blockLines returns the plain lines of the compressed block b.
func (u *unzipper) blockLines(b *auditBlock) ([]byte, error) {
	u.mu.Lock()
	if u.lastBlk == b {
		data := u.lastData
		u.mu.Unlock()
		return data, nil
	}
	u.mu.Unlock()
	data, err := u.decode(b.Data)
	if err != nil {
		return nil, err
	}
	u.mu.Lock()
	u.lastBlk, u.lastData = b, data
	u.mu.Unlock()
	return data, nil
}

// unzipConcurrency is how many decompressions one unzipper runs at once (more wait).
const unzipConcurrency = 2

func (u *unzipper) decode(src []byte) ([]byte, error) {
	u.once.Do(func() {
		u.dec, u.err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(unzipConcurrency),
			zstd.WithDecoderMaxMemory(maxAuditBatchBytes))
	})
	if u.err != nil {
		return nil, fmt.Errorf("audit lines decoder: %w", u.err)
	}
	out, err := u.dec.DecodeAll(src, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: compressed audit lines: %v", ErrInvalid, err)
	}
	return out, nil
}

func applyAppendAuditZstd(tx *txn, c *AppendAuditLines) *Result {
	lines, err := tx.unzipper().decode(c.Data)
	if err != nil {
		return fail(err)
	}
	plain := *c
	plain.Data = lines
	// The frame is kept as the block when the whole batch commits; a copy, so that the block
	// does not pin (or share) the buffer of the command it came in.
	return appendAuditLines(tx, &plain, bytes.Clone(c.Data))
}
