// Package audit keeps a node's audit records durable on local disk until the cluster has committed them.
//
// Every secret access is audited, and the record must be durable before the node answers
// (invariant 4 of DEVELOPERS.md: fail closed). A Raft round trip per read would be too slow,
// so a node appends its records to a local append-only log instead: [Log.Append] assigns the
// record the node's next sequence number (fsm.AuditRecord.NodeSeq, strictly increasing from
// 1 and gapless) and returns only once the record is durable. Appends that arrive while a
// write is in flight share the next write and sync (group commit), so the number of syncs
// grows with time, not with the number of records. While appends come concurrently (the last
// group held more than one record) the writer also waits Options.GroupDelay before taking the
// next group, so that more records share each sync: a sync costs the same for one record as
// for fifty, and on a busy node fewer, larger syncs leave more of the machine for requests. A
// lone appender's group (one record) is written at once, so a quiet node adds no latency.
// If the write or the sync fails, every Append of that group gets [ErrUnavailable] and the
// caller must fail its request.
//
// Segment files are preallocated: created at their full size, zero-filled, and synced once,
// so that an append changes neither the file size nor its block map and fdatasync has only
// the data to write, without a file system journal commit. (fallocate alone is not enough:
// on ext4 it leaves "unwritten" extents whose conversion on first write is journaled.) The
// next segment is prepared in the background as a spare file, renamed into place when the
// log moves on to it.
//
// [Log.Run] ships what is durable to the cluster in batches (the caller wires ShipDeps.Ship
// to a Raft proposal that commits a batch in one entry) and deletes segment files once the
// cluster has committed all of their records. After a restart everything above the
// cluster's committed mark is shipped again; the FSM ignores records of a node whose
// NodeSeq is at or below the highest it has committed for that node, so shipping twice is
// harmless and nothing is lost.
//
// # Files
//
// Options.Dir (created 0700) holds segment files named after the NodeSeq of their first
// record, zero-padded to 20 digits so that names sort like numbers:
//
//	audit-00000000000000000001.log
//	audit-00000000000000004097.log
//
// Only the newest segment (the active one) is written to; the writer starts a new one when
// the records of the active one reach Options.SegmentSize bytes. A segment may be empty: its
// name then still records the next NodeSeq to assign, which is why the active segment is
// never deleted, even when all of it is committed. The spare is audit-spare.tmp; other
// files are ignored. Segment files are 0600.
//
// A segment is a sequence of lines, one record per line, followed by zero bytes up to its
// preallocated size (the records end at the first zero byte where a line would start, or at
// the end of the file):
//
//	<crc> SP <json> LF
//
// where <json> is the fsm.AuditRecord as a JSON object: encoded by encoding/json (which never
// emits a raw newline or a zero byte) without its NodeSeq, which is then added as the last
// member, so that the record can be encoded before its NodeSeq is assigned. <crc> is the
// CRC-32 (Castagnoli) of the <json> bytes written as 8 lower-case hexadecimal digits. Within
// a segment the records' NodeSeq values are consecutive, the first one equals the number in
// the file name, and every record carries this node's NodeID.
// Across segments NodeSeq increases strictly; the only gaps are the ones left when the log
// skips ahead (see below).
//
// # Recovery
//
// [Open] reads every segment. The lines written by the last, unfinished group commit before a
// crash may be torn; as the write went to preallocated zeros, any part of it (whole pages, in
// any order) may have reached the disk. A bad line in the last segment is such a torn tail if
// it holds a zero byte (part of it never reached the disk) or if no valid line follows it;
// Open then overwrites everything after the last good record with zeros (those records were
// never acknowledged). Anything else that does not check out — a bad line without a zero byte
// followed by a valid one, a bad line in an older segment or data after its zeros, a NodeSeq
// out of order, a record of another NodeID — is corruption of records that were acknowledged,
// and Open refuses to open with an error wrapping [ErrCorrupt] that names the file and
// offset. The node must not serve without its audit log; an operator decides what to do with
// the file.
//
// If the cluster has committed a NodeSeq of this node above anything in the local log (the
// directory was lost or the NodeID reused), Run logs an error and skips the sequence ahead of
// it, because the FSM would drop records numbered at or below it as duplicates. The skip is
// persisted as an empty segment named after the new next NodeSeq.
package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/fsm"
)

// Errors of the audit log.
var (
	// ErrClosed: Append after Close.
	ErrClosed = errors.New("audit log closed")
	// ErrUnavailable: the record could not be made durable (write or sync failed, disk full,
	// ...). The caller must fail the request (503).
	ErrUnavailable = errors.New("audit record could not be made durable")
	// ErrCorrupt: Open found a segment whose acknowledged records do not check out.
	ErrCorrupt = errors.New("audit log corrupt")
)

// Defaults of Options.
const (
	DefaultMaxBatch     = 4096
	DefaultSegmentSize  = 16 << 20
	DefaultShipInterval = time.Second
	DefaultGroupDelay   = 500 * time.Microsecond
)

const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 5 * time.Second
	maxSpare   = 4 << 20 // largest write buffer kept for reuse
	spareName  = "audit-spare.tmp"
)

// errAborted: preparing a spare segment stopped because the Log is closing.
var errAborted = errors.New("aborted")

// Options configure a Log.
type Options struct {
	Dir          string        // directory for segment files (created 0700)
	NodeID       string        // this node's id, stamped on every record; required
	MaxBatch     int           // records per shipped batch; default 4096
	SegmentSize  int64         // bytes before rotating to a new segment file; default 16 MiB
	ShipInterval time.Duration // a partial batch ships at most this often; default 1s
	GroupDelay   time.Duration // while appends come concurrently, gather records this long before each sync; default 500µs, <0: none
	Log          *slog.Logger  // default: discard
}

// segment is one segment file.
type segment struct {
	first uint64 // NodeSeq of its first record, the number in its name
	path  string
}

// group is the set of Appends that share one write and one sync.
type group struct {
	done chan struct{} // closed once err is set
	err  error
}

func newGroup() *group { return &group{done: make(chan struct{})} }

// hookFunc is a test hook run before each file operation of the writer ("write", "sync",
// "create", "dirsync", "repair"); a non-nil error fails the operation.
type hookFunc func(op string, f *os.File) error

// Log is a node's local audit log. Its methods are safe for concurrent use; at most one Run
// may be active at a time.
type Log struct {
	o   Options
	log *slog.Logger

	flushReq chan struct{} // wakes the writer (capacity 1)
	kick     chan struct{} // wakes Run after records became durable (capacity 1)
	stop     chan struct{} // closed by Close
	stopped  chan struct{} // closed when the writer has exited
	running  atomic.Bool   // a Run is active
	syncs    atomic.Uint64 // syncs of segment files
	written  atomic.Uint64 // records made durable
	spareSeg chan *os.File // a prepared spare segment file, or nil if that failed (capacity 1)
	spareWG  sync.WaitGroup

	mu         sync.Mutex
	closed     bool
	nextSeq    uint64 // NodeSeq of the next Append
	bumpTo     uint64 // when above nextSeq: the writer skips the sequence ahead to it
	buf        []byte // encoded lines of group cur, not yet handed to the writer
	bufFirst   uint64 // NodeSeq of the first line in buf
	spare      []byte // a drained buffer to reuse
	cur        *group
	durableSeq uint64    // every NodeSeq up to it is durable (or was skipped)
	committed  uint64    // every NodeSeq up to it is known to be committed by the cluster
	segs       []segment // sorted by first; the last one is active
	activeSize int64     // durable bytes of the active segment
	hook       hookFunc

	// Owned by the writer goroutine (by Open before it starts, by Close after it exits).
	f          *os.File // active segment
	fPath      string
	fSize      int64  // durable bytes of f: its records
	fAlloc     int64  // f's durable file size; the bytes from fSize to it are zeros
	fDirty     int64  // end of what a failed write may have left past fSize
	fileNext   uint64 // NodeSeq the next line of f must carry
	lastGroup  int    // records in the last group written; more than one: appends are concurrent
	needRepair bool   // f may hold bytes past fSize, or its fd is unusable
	spareBusy  bool   // a spare is being prepared, or waits in spareSeg
}

// Open opens (creating it if needed) the log in o.Dir. It checks every segment, clears a torn
// tail of the last one, and continues the sequence after the last durable record. It
// returns an error wrapping ErrCorrupt if an acknowledged record is damaged.
func Open(o Options) (*Log, error) {
	if o.Dir == "" {
		return nil, errors.New("audit: Options.Dir is required")
	}
	if o.NodeID == "" {
		return nil, errors.New("audit: Options.NodeID is required")
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.SegmentSize <= 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.ShipInterval <= 0 {
		o.ShipInterval = DefaultShipInterval
	}
	if o.GroupDelay == 0 {
		o.GroupDelay = DefaultGroupDelay
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: create directory: %w", err)
	}
	// A spare left by a crash is not known to be complete.
	if err := os.Remove(filepath.Join(o.Dir, spareName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("audit: remove old spare segment: %w", err)
	}
	segs, err := listSegments(o.Dir)
	if err != nil {
		return nil, err
	}
	l := &Log{
		o:        o,
		log:      o.Log,
		flushReq: make(chan struct{}, 1),
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		stopped:  make(chan struct{}),
		spareSeg: make(chan *os.File, 1),
		cur:      newGroup(),
	}

	var last uint64 // NodeSeq of the last record found
	var lastSize int64
	for i, s := range segs {
		isLast := i == len(segs)-1
		sc, err := scanSegment(s, o.NodeID, isLast)
		if err != nil {
			return nil, err
		}
		if sc.count > 0 {
			if sc.first != s.first {
				return nil, fmt.Errorf("%w: %s: first record has NodeSeq %d, want %d", ErrCorrupt, s.path, sc.first, s.first)
			}
			if sc.first <= last {
				return nil, fmt.Errorf("%w: %s: NodeSeq %d does not follow %d of the previous segment", ErrCorrupt, s.path, sc.first, last)
			}
			last = sc.last
		}
		if isLast {
			lastSize = sc.size
			if sc.torn > 0 {
				// Zero it rather than truncate: the segment keeps its preallocated space.
				if err := zeroRange(s.path, sc.size, sc.size+sc.torn); err != nil {
					return nil, fmt.Errorf("audit: clear torn tail: %w", err)
				}
				l.log.Warn("audit: dropped the torn tail of the last segment", "file", s.path, "bytes", sc.torn, "last_seq", last)
			}
		}
	}

	var f *os.File
	if len(segs) == 0 {
		s := segment{first: 1, path: segPath(o.Dir, 1)}
		f, err = l.createSegment(s.path, nil, true)
		if err != nil {
			if f != nil {
				f.Close()
			}
			return nil, fmt.Errorf("audit: create segment: %w", err)
		}
		segs = []segment{s}
	} else {
		f, err = os.OpenFile(segs[len(segs)-1].path, os.O_WRONLY, 0)
		if err != nil {
			return nil, fmt.Errorf("audit: open active segment: %w", err)
		}
		if lastSize < o.SegmentSize {
			// Written by a version that did not preallocate, or preallocation failed.
			l.preallocate(f, true)
			if err := f.Sync(); err != nil {
				f.Close()
				return nil, fmt.Errorf("audit: sync active segment: %w", err)
			}
		}
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("audit: %w", err)
	}
	active := segs[len(segs)-1]
	l.f, l.fPath, l.fSize, l.fAlloc, l.fDirty = f, active.path, lastSize, st.Size(), lastSize
	l.fileNext = max(last+1, active.first)
	l.nextSeq = l.fileNext
	l.durableSeq = l.nextSeq - 1
	l.committed = segs[0].first - 1 // older segments were deleted once committed
	l.segs = segs
	l.activeSize = lastSize

	go l.writer()
	return l, nil
}

// Append stamps r with this node's NodeID and next NodeSeq, writes it and returns it once it
// is durable. It returns an error wrapping ErrUnavailable if the record could not be made
// durable, ErrClosed after Close, or ctx's error if ctx ends first (the record may then still
// become durable and be shipped; the caller must fail its request all the same).
func (l *Log) Append(ctx context.Context, r fsm.AuditRecord) (fsm.AuditRecord, error) {
	if err := ctx.Err(); err != nil {
		return fsm.AuditRecord{}, err
	}
	// Seq and Batch are the cluster's to assign: the line must be the record's canonical form.
	r.NodeID, r.NodeSeq, r.Seq, r.Batch = l.o.NodeID, 0, 0, 0
	e := encodeRecord(&r)
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		e.release()
		return fsm.AuditRecord{}, ErrClosed
	}
	r.NodeSeq = l.nextSeq
	if len(l.buf) == 0 {
		l.bufFirst = r.NodeSeq
	}
	l.buf = appendLine(l.buf, e, r.NodeSeq)
	l.nextSeq++
	g := l.cur
	l.mu.Unlock()
	e.release()

	select {
	case l.flushReq <- struct{}{}:
	default:
	}
	select {
	case <-g.done:
		if g.err != nil {
			return fsm.AuditRecord{}, g.err
		}
		return r, nil
	case <-ctx.Done():
		return fsm.AuditRecord{}, ctx.Err()
	}
}

// Stats are counters of a Log since Open.
type Stats struct {
	Syncs   uint64 // syncs (fdatasync) of segment files
	Records uint64 // records made durable; Records/Syncs is how many records share a sync
}

// Stats returns the Log's counters.
func (l *Log) Stats() Stats {
	return Stats{Syncs: l.syncs.Load(), Records: l.written.Load()}
}

// Pending is the number of durable records not yet known to be committed by the cluster.
func (l *Log) Pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.durableSeq <= l.committed {
		return 0
	}
	return int(l.durableSeq - l.committed)
}

// LastSeq is the highest NodeSeq appended (durably), or skipped over.
func (l *Log) LastSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.durableSeq
}

// Close makes the records already handed to Append durable, stops the writer and closes the
// active segment. Later Appends get ErrClosed; a running Run returns. Close is idempotent.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	close(l.stop)
	<-l.stopped
	l.spareWG.Wait()
	select {
	case f := <-l.spareSeg:
		if f != nil {
			f.Close()
		}
	default:
	}
	if err := os.Remove(filepath.Join(l.o.Dir, spareName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		l.log.Warn("audit: cannot remove the spare segment", "err", err)
	}
	if err := l.f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("audit: close segment: %w", err)
	}
	return nil
}

// writer is the goroutine that writes and syncs groups of records.
func (l *Log) writer() {
	defer close(l.stopped)
	for {
		select {
		case <-l.flushReq:
			l.flush()
		case <-l.stop:
			l.flush() // Append refuses new records now: this drains
			if l.needRepair {
				l.mu.Lock()
				hook := l.hook
				l.mu.Unlock()
				if err := l.repair(hook); err != nil {
					l.log.Warn("audit: cannot repair the active segment before closing", "file", l.fPath, "err", err)
				}
			}
			return
		}
	}
}

// flush writes and syncs the records buffered so far as one group, then the ones buffered
// meanwhile, until none are left; it also carries out a pending skip of the sequence.
//
// Once a group is durable, one critical section both records that and takes the next group,
// and only then are the group's Appends woken: they would otherwise contend for mu (to append
// again) with the writer about to take the next group, delaying its sync. When the writer
// gathers records for GroupDelay first, it wakes the durable group's Appends before waiting.
func (l *Log) flush() {
	var prev *group     // durable, its Appends not yet woken
	var prevLast uint64 // its last NodeSeq
	var prevData []byte // its buffer, for reuse
	for {
		if l.o.GroupDelay > 0 && l.lastGroup > 1 { // appends are concurrent: gather more
			if prev != nil {
				l.mu.Lock()
				l.settle(prevLast, prevData)
				l.mu.Unlock()
				l.wake(prev)
				prev, prevData = nil, nil
			}
			l.gather()
		}
		l.mu.Lock()
		l.activeSize = l.fSize
		if prev != nil {
			l.settle(prevLast, prevData)
		}
		data, g, first, last := l.buf, l.cur, l.bufFirst, l.nextSeq-1
		if len(data) > 0 {
			l.buf, l.spare = l.spare[:0], nil
			l.cur = newGroup()
		}
		bump := l.bumpTo
		if bump > l.nextSeq {
			l.nextSeq = bump
			l.durableSeq = max(l.durableSeq, bump-1)
		} else {
			bump = 0
		}
		l.bumpTo = 0
		hook := l.hook
		l.mu.Unlock()
		if prev != nil {
			l.wake(prev)
			prev, prevData = nil, nil
		}
		if len(data) == 0 && bump == 0 {
			return
		}

		var err error
		if len(data) > 0 {
			err = l.writeGroup(data, first, last, hook)
			if err != nil && l.needRepair {
				// Cut the failed lines off now rather than at the next write: they must not
				// outlive the error the Appends get (they may claim accesses that were refused).
				if rerr := l.repair(hook); rerr != nil {
					l.log.Warn("audit: cannot repair the active segment yet", "file", l.fPath, "err", rerr)
				}
			}
		}
		if bump != 0 {
			// Persist the skip as an empty segment named after it. If this fails, the next
			// write, whose first NodeSeq no longer follows the active segment, tries again.
			if berr := l.startSegment(bump, hook); berr != nil {
				l.log.Error("audit: cannot start a segment after skipping the sequence ahead", "next_seq", bump, "err", berr)
			}
		}
		if len(data) == 0 {
			select {
			case l.kick <- struct{}{}:
			default:
			}
			continue
		}
		if err == nil {
			prev, prevLast, prevData = g, last, data
			l.lastGroup = int(last - first + 1)
			continue
		}

		err = fmt.Errorf("%w: %v", ErrUnavailable, err)
		l.mu.Lock()
		l.activeSize = l.fSize
		// The records buffered meanwhile carry NodeSeqs after the ones that failed: fail them
		// too, and hand the failed numbers out again so the sequence stays gapless.
		if len(l.buf) > 0 {
			l.cur.err = err
			close(l.cur.done)
			l.cur = newGroup()
			l.buf = l.buf[:0]
		}
		l.nextSeq = l.durableSeq + 1
		if cap(data) <= maxSpare {
			l.spare = data[:0]
		}
		l.mu.Unlock()
		g.err = err
		close(g.done)
		l.log.Warn("audit: writing records failed; appends fail until the disk recovers", "first_seq", first, "last_seq", last, "err", err)
		return
	}
}

// settle records (under mu) that the group ending at last is durable and keeps its buffer
// for reuse.
func (l *Log) settle(last uint64, data []byte) {
	l.activeSize = l.fSize
	l.durableSeq = max(l.durableSeq, last)
	if cap(data) <= maxSpare {
		l.spare = data[:0]
	}
}

// wake releases the Appends of a durable group and tells Run there is more to ship.
func (l *Log) wake(g *group) {
	close(g.done)
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// gather waits GroupDelay for more records to join the next group, or until Close.
func (l *Log) gather() {
	t := time.NewTimer(l.o.GroupDelay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-l.stop:
	}
}

// writeGroup appends data (the lines of NodeSeq first..last) to the active segment, starting
// a new segment first if needed, and syncs it (fdatasync).
func (l *Log) writeGroup(data []byte, first, last uint64, hook hookFunc) error {
	if l.needRepair {
		if err := l.repair(hook); err != nil {
			return err
		}
	}
	if first != l.fileNext || l.fSize >= l.o.SegmentSize {
		if err := l.startSegment(first, hook); err != nil {
			return err
		}
	}
	l.needRepair = true // until the group is durable
	end := l.fSize + int64(len(data))
	l.fDirty = max(l.fDirty, end)
	if err := runHook(hook, "write", l.f); err != nil {
		return err
	}
	if _, err := l.f.WriteAt(data, l.fSize); err != nil {
		return err
	}
	if err := runHook(hook, "sync", l.f); err != nil {
		return err
	}
	l.syncs.Add(1)
	// Within the preallocated space only data changes: fdatasync suffices. Past it (a group
	// crossing SegmentSize, or preallocation failed) fdatasync makes the new size durable too.
	if err := datasync(l.f); err != nil {
		return err
	}
	l.needRepair = false
	l.written.Add(last - first + 1)
	l.fSize, l.fDirty = end, end
	l.fAlloc = max(l.fAlloc, end)
	l.fileNext = last + 1
	if spareSegments && !l.spareBusy && l.fSize >= l.o.SegmentSize/2 {
		l.prepareSpare()
	}
	return nil
}

// createSegment creates the segment file path, preallocated, and makes it and its directory
// entry durable. It takes the spare if one is ready; otherwise it creates the file, writing
// its zeros only if zero is set (they take a while). It may return the file along with an
// error: the file exists then but is not known to be durable.
func (l *Log) createSegment(path string, hook hookFunc, zero bool) (*os.File, error) {
	if err := runHook(hook, "create", nil); err != nil {
		return nil, err
	}
	f := l.takeSpare(path)
	if f == nil {
		var err error
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, err
		}
		l.preallocate(f, zero)
		if err := f.Sync(); err != nil {
			return f, err
		}
	}
	if err := runHook(hook, "dirsync", nil); err != nil {
		return f, err
	}
	return f, syncDir(l.o.Dir)
}

// preallocate extends f to SegmentSize with zeros, reserving its blocks, so that appends
// change neither its size nor its block map and fdatasync has only data to write. Without
// it appends still work, only each sync costs more; so a failure (a full disk) is logged.
func (l *Log) preallocate(f *os.File, zero bool) {
	if err := allocate(f, l.o.SegmentSize, zero, nil); err != nil {
		l.log.Warn("audit: cannot preallocate the segment; appending without", "file", f.Name(), "size", l.o.SegmentSize, "err", err)
	}
}

// prepareSpare starts preparing the next segment file in the background: writing 16 MiB of
// zeros and syncing them takes tens of milliseconds that appends should not wait for.
func (l *Log) prepareSpare() {
	l.spareBusy = true
	l.spareWG.Add(1)
	go func() {
		defer l.spareWG.Done()
		path := filepath.Join(l.o.Dir, spareName)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err == nil {
			err = allocate(f, l.o.SegmentSize, true, l.stop)
			if err == nil {
				err = f.Sync()
			}
			if err != nil {
				f.Close()
				f = nil
				os.Remove(path)
			}
		}
		if err != nil && !errors.Is(err, errAborted) {
			l.log.Warn("audit: cannot prepare a spare segment", "err", err)
		}
		l.spareSeg <- f // never blocks: one spare at a time
	}()
}

// takeSpare renames the prepared spare, if there is one, to path and returns it.
func (l *Log) takeSpare(path string) *os.File {
	var f *os.File
	select {
	case f = <-l.spareSeg:
		l.spareBusy = false
	default:
		return nil
	}
	if f == nil {
		return nil
	}
	if err := renameNoReplace(filepath.Join(l.o.Dir, spareName), path); err != nil {
		l.log.Warn("audit: cannot use the spare segment", "err", err)
		f.Close()
		return nil
	}
	return f
}

// startSegment makes a new, empty segment named first the active one.
func (l *Log) startSegment(first uint64, hook hookFunc) error {
	if l.needRepair {
		if err := l.repair(hook); err != nil {
			return err
		}
	}
	if l.fSize == 0 && l.fileNext == first {
		return nil // the active segment is already the one
	}
	path := segPath(l.o.Dir, first)
	f, err := l.createSegment(path, hook, false)
	if f == nil {
		return err
	}
	var alloc int64
	if st, serr := f.Stat(); serr == nil {
		alloc = st.Size()
	}
	old := l.f
	l.f, l.fPath, l.fSize, l.fAlloc, l.fDirty, l.fileNext = f, path, 0, alloc, 0, first
	l.mu.Lock()
	l.segs = append(l.segs, segment{first: first, path: path})
	l.activeSize = 0
	l.mu.Unlock()
	old.Close() // synced already; a close error loses nothing
	if err != nil {
		l.needRepair = true // repair syncs the file and the directory
		return err
	}
	return nil
}

// repair brings the active segment back to its durable state after a failed write (its
// records, then zeros up to its preallocated size), through a fresh file descriptor in case
// the old one is unusable.
func (l *Log) repair(hook hookFunc) error {
	if err := runHook(hook, "repair", l.f); err != nil {
		return err
	}
	f, err := os.OpenFile(l.fPath, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	alloc := max(l.fAlloc, l.fSize)
	if err := f.Truncate(alloc); err != nil { // what a failed write appended past it
		f.Close()
		return err
	}
	if err := writeZeros(f, l.fSize, min(l.fDirty, alloc)); err != nil { // what it wrote within
		f.Close()
		return err
	}
	l.syncs.Add(1)
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := syncDir(l.o.Dir); err != nil {
		f.Close()
		return err
	}
	l.f.Close()
	l.f = f
	l.fAlloc, l.fDirty = alloc, l.fSize
	l.needRepair = false
	l.log.Info("audit: active segment repaired after a failed write", "file", l.fPath, "size", l.fSize)
	return nil
}

func runHook(h hookFunc, op string, f *os.File) error {
	if h == nil {
		return nil
	}
	return h(op, f)
}
