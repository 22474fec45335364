package fsm

import (
	"fmt"

	"github.com/klauspost/compress/zstd"
)

// CmdAppendAuditZstd is CmdAppendAuditLines with the batch's lines compressed into one zstd
// frame. Audit lines repeat most of their bytes (field names, node, principal, paths and ids
// of hot secrets), so a batch shrinks about fourfold: that much less to replicate and to write
// to every node's Raft log. Apply decompresses and then commits exactly what the plain command
// would: the chain hash covers and the state keeps the plain lines. It is a command type of
// its own so that a node which predates it stops on it instead of misreading the batch.
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

// unzipper decompresses batches in Apply. The FSM holds one for its lifetime; Apply calls are
// serialised, so it needs no lock.
type unzipper struct{ dec *zstd.Decoder }

func (u *unzipper) decode(src []byte) ([]byte, error) {
	if u.dec == nil {
		dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxAuditBatchBytes))
		if err != nil {
			return nil, fmt.Errorf("audit lines decoder: %w", err)
		}
		u.dec = dec
	}
	out, err := u.dec.DecodeAll(src, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: compressed audit lines: %v", ErrInvalid, err)
	}
	return out, nil
}

func applyAppendAuditZstd(tx *txn, c *AppendAuditLines) *Result {
	u := tx.unzip
	if u == nil {
		u = &unzipper{}
	}
	lines, err := u.decode(c.Data)
	if err != nil {
		return fail(err)
	}
	plain := *c
	plain.Data = lines
	return applyAppendAuditLines(tx, &plain)
}
