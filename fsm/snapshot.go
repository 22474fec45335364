package fsm

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/raft"
)

// Snapshot stream format: JSON values one after another. First a header, then one record per
// secret, version, policy and audit record, then a trailer holding the record count so a
// truncated stream is detected. Secret values appear only as ciphertext and wrapped keys.
const snapshotFormat = "keyward-fsm-v1"

type snapHeader struct {
	Format   string `json:"format"`
	Index    uint64 `json:"index"`
	AuditSeq uint64 `json:"audit_seq"`
}

type snapRecord struct {
	Secret  *Secret        `json:"s,omitempty"`
	Version *SecretVersion `json:"v,omitempty"`
	Policy  *Policy        `json:"p,omitempty"`
	Audit   *AuditRecord   `json:"a,omitempty"` // read only: snapshots of the first form
	Block   *auditBlock    `json:"ab,omitempty"`
	ZBlock  *auditBlock    `json:"zb,omitempty"` // a block kept compressed (Data is a zstd frame)
	Object  *snapObject    `json:"o,omitempty"`
	End     *uint64        `json:"end,omitempty"` // trailer: number of records before it
}

type snapshot struct{ state *State }

// Persist streams the captured state into the sink, cancelling it on error.
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := WriteSnapshot(sink, s.state); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

// Release implements raft.FSMSnapshot; an immutable view holds nothing to release.
func (s *snapshot) Release() {}

// WriteSnapshot streams st to w in the snapshot format.
func WriteSnapshot(w io.Writer, st *State) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(snapHeader{Format: snapshotFormat, Index: st.index, AuditSeq: st.auditSeq}); err != nil {
		return fmt.Errorf("write snapshot header: %w", err)
	}
	var n uint64
	var err error
	emit := func(r snapRecord) bool {
		if err = enc.Encode(r); err != nil {
			return false
		}
		n++
		return true
	}
	st.byID.Ascend(func(v *Secret) bool { return emit(snapRecord{Secret: v}) })
	st.versions.Ascend(func(v *SecretVersion) bool { return err == nil && emit(snapRecord{Version: v}) })
	st.policies.Ascend(func(v *Policy) bool { return err == nil && emit(snapRecord{Policy: v}) })
	st.audit.Ascend(func(v *auditBlock) bool {
		if v.Zstd {
			return err == nil && emit(snapRecord{ZBlock: v})
		}
		return err == nil && emit(snapRecord{Block: v})
	})
	st.objects.Ascend(func(o *object) bool {
		if err != nil {
			return false
		}
		raw, merr := json.Marshal(o.Value)
		if merr != nil {
			err = merr
			return false
		}
		return emit(snapRecord{Object: &snapObject{Kind: o.Kind, Key: o.Key, Value: raw}})
	})
	if err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	if err := enc.Encode(snapRecord{End: &n}); err != nil {
		return fmt.Errorf("write snapshot trailer: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	return nil
}

// ReadSnapshot decodes a stream written by WriteSnapshot into a new State.
func ReadSnapshot(r io.Reader) (*State, error) {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 256<<10))
	var h snapHeader
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("read snapshot header: %w", err)
	}
	if h.Format != snapshotFormat {
		return nil, fmt.Errorf("unknown snapshot format %q", h.Format)
	}
	s := emptyState()
	tx := newTxn(s)
	var n uint64
	var legacy *auditBlock // the block gathering records of the first form
	for {
		var rec snapRecord
		if err := dec.Decode(&rec); err != nil {
			if errors.Is(err, io.EOF) {
				return nil, errors.New("snapshot truncated: no trailer")
			}
			return nil, fmt.Errorf("read snapshot record %d: %w", n, err)
		}
		switch {
		case rec.End != nil:
			if *rec.End != n {
				return nil, fmt.Errorf("snapshot has %d records, trailer says %d", n, *rec.End)
			}
			out := tx.commit(h.Index)
			out.auditSeq = h.AuditSeq
			return out, nil
		case rec.Secret != nil:
			tx.putSecret(rec.Secret)
		case rec.Version != nil:
			tx.putVersion(rec.Version)
		case rec.Policy != nil:
			tx.putPolicy(rec.Policy)
		case rec.Block != nil:
			tx.auditTree().ReplaceOrInsert(rec.Block)
		case rec.ZBlock != nil:
			rec.ZBlock.Zstd = true
			tx.auditTree().ReplaceOrInsert(rec.ZBlock)
		case rec.Audit != nil:
			// The first form held records one by one: gather each batch's into a block.
			line := append(CanonicalAudit(*rec.Audit), '\n')
			if legacy != nil && legacy.Batch == rec.Audit.Batch && legacy.First+legacy.Count == rec.Audit.Seq {
				legacy.Data = append(legacy.Data, line...)
				legacy.Count++
			} else {
				legacy = &auditBlock{First: rec.Audit.Seq, Count: 1, Batch: rec.Audit.Batch, Data: line}
				tx.auditTree().ReplaceOrInsert(legacy)
			}
		case rec.Object != nil:
			o, err := decodeObject(rec.Object)
			if err != nil {
				return nil, err
			}
			tx.objectTree().ReplaceOrInsert(o)
		default:
			return nil, fmt.Errorf("snapshot record %d is empty", n)
		}
		n++
	}
}
