package store

import (
	"context"
	"fmt"
	"time"

	"github.com/keyward/keyward/fsm"
)

// AuditFilter selects committed audit records. Zero fields match everything.
type AuditFilter struct {
	Path      string
	Principal string // principal id
	Action    string
	Outcome   string // "", "success" or "failure"
	From, To  time.Time
	After     uint64 // records with Seq > After
	Limit     int
}

// AuditList returns committed audit records in order (admin). next is the Seq to pass as
// After for the following page, 0 on the last page.
func (s *Service) AuditList(ctx context.Context, f AuditFilter) (recs []fsm.AuditRecord, next uint64, err error) {
	if _, err := s.requireAdmin(ctx); err != nil {
		return nil, 0, s.audited(ctx, record{action: "AUDIT_READ"}, err)
	}
	if f.Limit <= 0 || f.Limit > MaxListLimit {
		return nil, 0, fmt.Errorf("%w: limit must be 1..%d", ErrInvalidArgument, MaxListLimit)
	}
	if f.Outcome != "" && f.Outcome != "success" && f.Outcome != "failure" {
		return nil, 0, fmt.Errorf("%w: outcome is success or failure", ErrInvalidArgument)
	}
	st, _, err := s.readState(ctx, ReadOptions{})
	if err != nil {
		return nil, 0, err
	}
	st.Audit(f.After+1, func(r *fsm.AuditRecord) bool {
		if !matches(r, f) {
			return true
		}
		if len(recs) == f.Limit {
			next = recs[len(recs)-1].Seq
			return false
		}
		recs = append(recs, *r)
		return true
	})
	return recs, next, s.audited(ctx, record{action: "AUDIT_READ"}, nil)
}

func matches(r *fsm.AuditRecord, f AuditFilter) bool {
	switch {
	case f.Path != "" && r.Path != f.Path,
		f.Principal != "" && r.PrincipalID != f.Principal,
		f.Action != "" && r.Action != f.Action,
		f.Outcome == "success" && !r.Success,
		f.Outcome == "failure" && r.Success,
		!f.From.IsZero() && r.AccessedAt < f.From.UnixNano(),
		!f.To.IsZero() && r.AccessedAt >= f.To.UnixNano():
		return false
	}
	return true
}

// AuditExportLine is one line of an audit export: a batch header followed by its records,
// and a last line (End) with the totals and the head hash, so a cut-off export is detected.
type AuditExportLine struct {
	Batch  *fsm.AuditBatch  `json:"batch,omitempty"`
	Record *fsm.AuditRecord `json:"record,omitempty"`
	End    *AuditExportEnd  `json:"end,omitempty"`
}

// AuditExportEnd closes an export.
type AuditExportEnd struct {
	Batches uint64 `json:"batches"`
	Records uint64 `json:"records"`
	Head    string `json:"head"` // hash of the last batch
}

// AuditExport calls emit for every committed batch and record, in chain order (admin).
func (s *Service) AuditExport(ctx context.Context, emit func(AuditExportLine) error) error {
	if _, err := s.requireAdmin(ctx); err != nil {
		return s.audited(ctx, record{action: "AUDIT_READ"}, err)
	}
	if err := s.audited(ctx, record{action: "AUDIT_READ"}, nil); err != nil {
		return err
	}
	st, _, err := s.readState(ctx, ReadOptions{})
	if err != nil {
		return err
	}
	var ferr error
	end := &AuditExportEnd{}
	st.AuditBatches(1, func(b *fsm.AuditBatch) bool {
		if ferr = emit(AuditExportLine{Batch: b}); ferr != nil {
			return false
		}
		end.Batches++
		end.Head = b.Hash
		st.Audit(b.First, func(r *fsm.AuditRecord) bool {
			if r.Seq > b.Last {
				return false
			}
			end.Records++
			ferr = emit(AuditExportLine{Record: r})
			return ferr == nil
		})
		return ferr == nil
	})
	if ferr != nil {
		return ferr
	}
	return emit(AuditExportLine{End: end})
}

// ChainReport is the outcome of a hash-chain check.
type ChainReport struct {
	OK      bool   `json:"ok"`
	Batches uint64 `json:"batches"`
	Records uint64 `json:"records"`
	// BrokenBatch is the first batch whose hash or link does not check out; Reason says how.
	BrokenBatch uint64 `json:"broken_batch,omitempty"`
	Reason      string `json:"reason,omitempty"`
}

// VerifyChain recomputes the hash chain over an export's lines (batch headers, each followed
// by its records) and names the first break. After retention pruned the oldest batches, the
// first remaining batch's Prev is the anchor.
func VerifyChain(lines []AuditExportLine) ChainReport {
	var rep ChainReport
	prev := ""
	for _, l := range lines {
		if l.Batch != nil {
			prev = l.Batch.Prev
			break
		}
	}
	var cur *fsm.AuditBatch
	var recs []fsm.AuditRecord
	check := func() bool {
		if cur == nil {
			return true
		}
		rep.Batches++
		rep.Records += uint64(len(recs))
		switch {
		case cur.Prev != prev:
			rep.BrokenBatch, rep.Reason = cur.Seq, "link to the previous batch does not match"
		case uint64(len(recs)) != cur.Last-cur.First+1:
			rep.BrokenBatch, rep.Reason = cur.Seq, fmt.Sprintf("batch lists %d records, found %d", cur.Last-cur.First+1, len(recs))
		case fsm.ChainHash(cur.Prev, recs) != cur.Hash:
			rep.BrokenBatch, rep.Reason = cur.Seq, "records do not hash to the batch hash (a record was changed)"
		default:
			prev = cur.Hash
			return true
		}
		return false
	}
	var end *AuditExportEnd
	for _, l := range lines {
		switch {
		case l.Batch != nil:
			if !check() {
				return rep
			}
			cur, recs = l.Batch, nil
		case l.Record != nil:
			recs = append(recs, *l.Record)
		case l.End != nil:
			end = l.End
		}
	}
	if !check() {
		return rep
	}
	// Exports keyward writes end with totals: a file cut off at a batch boundary fails here.
	if end != nil && (end.Batches != rep.Batches || end.Records != rep.Records || end.Head != prev) {
		rep.BrokenBatch = rep.Batches
		rep.Reason = fmt.Sprintf("export ends after %d batches and %d records, its trailer says %d and %d (cut off?)",
			rep.Batches, rep.Records, end.Batches, end.Records)
		return rep
	}
	rep.OK = true
	return rep
}

// AuditVerify recomputes the committed chain (admin).
func (s *Service) AuditVerify(ctx context.Context) (ChainReport, error) {
	var lines []AuditExportLine
	err := s.AuditExport(ctx, func(l AuditExportLine) error { lines = append(lines, l); return nil })
	if err != nil {
		return ChainReport{}, err
	}
	return VerifyChain(lines), nil
}

// PruneAudit drops committed audit batches older than retention; the leader calls it.
func (s *Service) PruneAudit(ctx context.Context, retention time.Duration) error {
	res, err := s.propose(ctx, fsm.MustEncode(fsm.CmdPruneAudit, fsm.PruneAudit{Before: s.d.Now().Add(-retention).UnixNano()}))
	if err != nil {
		return err
	}
	return res.Err
}
