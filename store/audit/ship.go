package audit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/keyward/keyward/fsm"
)

// ShipDeps is what Run needs from the cluster.
type ShipDeps struct {
	// Ship commits a batch of this node's records (in NodeSeq order, in their canonical
	// form) to the cluster; nil error means committed. It must not keep the batch.
	Ship func(ctx context.Context, batch *fsm.AppendAuditLines) error
	// Committed returns the highest NodeSeq of this node the cluster has committed (from the
	// local FSM state).
	Committed func() uint64
}

// Run ships durable records to the cluster until ctx ends or the Log is closed. Each round it
// asks Committed for the cluster's mark, deletes the segment files all of whose records are at
// or below it, reads up to MaxBatch records above it from the segments and hands them to Ship.
// It runs again right after records become durable, and every ShipInterval. When Ship fails
// it retries the same records (less those Committed reports meanwhile) with exponential
// backoff, logging at warn without record content. At most one Run may be active per Log.
func (l *Log) Run(ctx context.Context, d ShipDeps) {
	if !l.running.CompareAndSwap(false, true) {
		l.log.Error("audit: Run called while another Run is active")
		return
	}
	defer l.running.Store(false)
	rd := &reader{l: l}
	defer rd.close()
	tick := time.NewTicker(l.o.ShipInterval)
	var lastShip time.Time
	defer tick.Stop()

	// pend holds records read but not yet committed: a partial batch waiting for the interval,
	// or a batch whose Ship failed. Keeping them means the reader continues from its cursor
	// instead of re-reading the segment from its start.
	pend := &pending{batch: fsm.AppendAuditLines{NodeID: l.o.NodeID}}
	var failed bool
	var backoff time.Duration
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.stop:
			return
		default:
		}
		if d.Committed != nil {
			l.observeCommitted(d.Committed())
		}
		committed := l.collect(rd)

		pend.dropThrough(committed)
		if pend.len() == 0 {
			failed = false // what failed turned out committed after all
		}
		if !failed && pend.len() < l.o.MaxBatch {
			from := committed + 1
			if n := pend.len(); n > 0 {
				from = pend.batch.Seqs[n-1] + 1
			}
			if err := rd.read(from, l.o.MaxBatch-pend.len(), pend); err != nil {
				l.log.Error("audit: cannot read records to ship", "err", err)
				if !l.sleep(ctx, &backoff) {
					return
				}
				continue
			}
		}
		n := pend.len()
		// Ship a partial batch at most once per ShipInterval: records are already durable here,
		// and every batch costs a Raft entry (an fsync on every node), so small frequent batches
		// would cost the cluster far more than the latency they save. While a partial batch
		// waits, new appends do not wake the shipper.
		if n == 0 || (!failed && n < l.o.MaxBatch && time.Since(lastShip) < l.o.ShipInterval) {
			kick := l.kick
			if n > 0 {
				kick = nil
			}
			select {
			case <-ctx.Done():
				return
			case <-l.stop:
				return
			case <-kick:
			case <-tick.C:
			}
			continue
		}
		lastShip = time.Now()

		first, last := pend.batch.Seqs[0], pend.batch.Seqs[n-1]
		if err := d.Ship(ctx, &pend.batch); err != nil {
			if ctx.Err() != nil {
				return
			}
			failed = true
			l.log.Warn("audit: shipping records failed; retrying", "err", err, "records", n,
				"first_seq", first, "last_seq", last)
			if !l.sleep(ctx, &backoff) {
				return
			}
			continue
		}
		pend.reset()
		failed, backoff = false, 0
		l.markCommitted(last)
	}
}

// sleep waits out the next backoff step; false if ctx ended or the Log closed.
func (l *Log) sleep(ctx context.Context, backoff *time.Duration) bool {
	*backoff = min(max(*backoff*2, minBackoff), maxBackoff)
	t := time.NewTimer(*backoff)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-l.stop:
		return false
	case <-t.C:
		return true
	}
}

func (l *Log) markCommitted(seq uint64) {
	l.mu.Lock()
	l.committed = max(l.committed, seq)
	l.mu.Unlock()
}

// observeCommitted takes in the cluster's committed mark. A mark at or above the next NodeSeq
// means the cluster holds records of this NodeID that this log never wrote: the sequence must
// skip ahead of them, or the FSM would drop new records as duplicates.
func (l *Log) observeCommitted(c uint64) {
	l.mu.Lock()
	l.committed = max(l.committed, c)
	skip := c >= l.nextSeq && c+1 > l.bumpTo
	next := l.nextSeq
	if skip {
		l.bumpTo = c + 1
	}
	l.mu.Unlock()
	if skip {
		l.log.Error("audit: the cluster has committed audit records of this node beyond the local log; skipping the sequence ahead (was the audit directory lost or the node id reused?)",
			"node_id", l.o.NodeID, "committed_seq", c, "local_next_seq", next)
		select {
		case l.flushReq <- struct{}{}:
		default:
		}
	}
}

// collect deletes the segments (never the active one) all of whose records are committed and
// returns the committed mark.
func (l *Log) collect(rd *reader) uint64 {
	l.mu.Lock()
	committed := l.committed
	var dead []segment
	for len(l.segs) > 1 && l.segs[1].first-1 <= committed {
		dead = append(dead, l.segs[0])
		l.segs = l.segs[1:]
	}
	l.mu.Unlock()
	for _, s := range dead {
		if rd.f != nil && rd.seg.path == s.path {
			rd.close()
		}
		if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			l.log.Warn("audit: cannot delete a committed segment", "file", s.path, "err", err)
		}
	}
	if len(dead) > 0 {
		if err := syncDir(l.o.Dir); err != nil {
			l.log.Warn("audit: cannot sync the directory after deleting segments", "err", err)
		}
	}
	return committed
}

// reader reads records back from the segments for Run, remembering where it stopped so that
// consecutive batches do not rescan a segment.
type reader struct {
	l    *Log
	f    *os.File
	seg  segment
	off  int64  // offset in f of the next unread line
	next uint64 // every record before off has NodeSeq < next
}

func (rd *reader) close() {
	if rd.f != nil {
		rd.f.Close()
		rd.f = nil
	}
}

func (rd *reader) open(s segment) error {
	rd.close()
	f, err := os.Open(s.path)
	if err != nil {
		return err
	}
	rd.f, rd.seg, rd.off = f, s, 0
	return nil
}

// pending is a batch of records read from the segments, in the form Ship takes.
type pending struct{ batch fsm.AppendAuditLines }

func (p *pending) len() int { return len(p.batch.Seqs) }

// dropThrough removes the records with NodeSeq <= seq (a prefix).
func (p *pending) dropThrough(seq uint64) {
	k, cut := 0, 0
	for k < len(p.batch.Seqs) && p.batch.Seqs[k] <= seq {
		cut += bytes.IndexByte(p.batch.Data[cut:], '\n') + 1
		k++
	}
	if k == 0 {
		return
	}
	p.batch.Data = append(p.batch.Data[:0], p.batch.Data[cut:]...)
	p.batch.Seqs = append(p.batch.Seqs[:0], p.batch.Seqs[k:]...)
}

func (p *pending) reset() { p.batch.Seqs, p.batch.Data = p.batch.Seqs[:0], p.batch.Data[:0] }

// read adds up to max durable records with NodeSeq >= from, in order, to p.
func (rd *reader) read(from uint64, max int, p *pending) error {
	l := rd.l
	l.mu.Lock()
	segs := append([]segment(nil), l.segs...)
	activeSize := l.activeSize
	l.mu.Unlock()

	idx := -1
	if rd.f != nil {
		idx = sort.Search(len(segs), func(i int) bool { return segs[i].first >= rd.seg.first })
		if idx == len(segs) || segs[idx].path != rd.seg.path {
			idx = -1
		}
	}
	if idx < 0 || rd.next != from {
		idx = sort.Search(len(segs), func(i int) bool { return segs[i].first > from }) - 1
		if idx < 0 {
			idx = 0
		}
		if err := rd.open(segs[idx]); err != nil {
			return err
		}
		rd.next = from
	}

	added := 0
	for {
		active := idx == len(segs)-1
		n := int64(1<<62) - rd.off
		if active {
			n = activeSize - rd.off // never read past what is durable
		}
		if n > 0 {
			br := bufio.NewReaderSize(io.NewSectionReader(rd.f, rd.off, n), 64<<10)
			for added < max {
				if c, _ := br.Peek(1); len(c) == 1 && c[0] == 0 {
					break // the preallocated rest of a segment
				}
				line, err := readLine(br)
				if len(line) == 0 && errors.Is(err, io.EOF) {
					break
				}
				if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, errZero) {
					rd.close()
					return err
				}
				body, seq, derr := lineSeq(line)
				if derr != nil {
					off := rd.off
					rd.close()
					return fmt.Errorf("%w: %s at offset %d: %v", ErrCorrupt, rd.seg.path, off, derr)
				}
				rd.off += int64(len(line))
				if seq < rd.next {
					continue
				}
				p.batch.AppendLine(seq, body)
				added++
				rd.next = seq + 1
			}
		}
		if added >= max || active {
			return nil
		}
		idx++
		if err := rd.open(segs[idx]); err != nil {
			return err
		}
	}
}
