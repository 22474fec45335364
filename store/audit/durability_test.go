package audit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/keyward/keyward/fsm"
	"github.com/keyward/keyward/store/audit"
)

// TestCrashReopen opens the log again while the first Log is still open and never closed, as
// after the process died: every acknowledged record is there and the sequence continues.
func TestCrashReopen(t *testing.T) {
	dir := t.TempDir()
	o := audit.Options{Dir: dir, SegmentSize: 8 << 10}
	l := openLog(t, o)
	var mu sync.Mutex
	var acked []fsm.AuditRecord
	var wg sync.WaitGroup
	for g := range 20 {
		wg.Go(func() {
			for i := range 25 {
				r, err := l.Append(context.Background(), rec(g*100+i))
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				mu.Lock()
				acked = append(acked, r)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	files := segFiles(t, dir)
	if len(files) < 3 {
		t.Fatalf("%d segment files, want several", len(files))
	}
	if st, err := os.Stat(files[len(files)-1]); err != nil || st.Size() < o.SegmentSize {
		t.Fatalf("active segment not preallocated to %d bytes: %v %v", o.SegmentSize, st.Size(), err)
	}

	l2 := openLog(t, o) // no Close of l: a crash-like reopen
	n := uint64(len(acked))
	if l2.LastSeq() != n || l2.Pending() != int(n) {
		t.Fatalf("after reopen LastSeq %d Pending %d, want %d", l2.LastSeq(), l2.Pending(), n)
	}
	r := appendN(t, l2, 9999, 1)[0]
	if r.NodeSeq != n+1 {
		t.Fatalf("Append after reopen got NodeSeq %d, want %d", r.NodeSeq, n+1)
	}
	acked = append(acked, r)
	slices.SortFunc(acked, func(a, b fsm.AuditRecord) int { return int(a.NodeSeq) - int(b.NodeSeq) })
	c := &cluster{t: t}
	run(t, l2, c.deps())
	waitFor(t, "all records shipped", func() bool { return c.Committed() == n+1 })
	_, applied, _ := c.snapshot()
	checkApplied(t, applied, acked)
}

// TestTornWriteInPreallocatedSpace tears the last write the way a crash can inside the
// preallocated space: some of its pages reach the disk, others stay zero. A bad line with a
// zero byte in it is the tail of that write, even if a valid line follows; Open clears it, and
// what it cleared does not come back as corruption later.
func TestTornWriteInPreallocatedSpace(t *testing.T) {
	cases := map[string]func(recs, last []byte) []byte{
		// The first page of the write is lost, a later one made it.
		"zeros then a line": func(recs, last []byte) []byte {
			return slices.Concat(recs, make([]byte, 700), last)
		},
		// A middle page is lost.
		"half a line, zeros, a line": func(recs, last []byte) []byte {
			return slices.Concat(recs, last[:len(last)/2], make([]byte, 700), last, []byte("garbage"))
		},
	}
	for name, tear := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			o := audit.Options{Dir: dir}
			l := openLog(t, o)
			want := appendN(t, l, 1, 5)
			l.Close()
			path, b := lastSegment(t, dir)
			i := lastLineStart(b)
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt(tear(b[:i], b[i:]), 0); err != nil {
				t.Fatal(err)
			}
			f.Close()

			l = openLog(t, o)
			if l.LastSeq() != 4 {
				t.Fatalf("LastSeq after a torn write %d, want 4", l.LastSeq())
			}
			if _, got := lastSegment(t, dir); !bytes.Equal(got, b[:i]) {
				t.Fatalf("Open did not clear the torn write: %d bytes of records, want %d", len(got), i)
			}
			if st, err := os.Stat(path); err != nil || st.Size() != audit.DefaultSegmentSize {
				t.Fatalf("segment size %d after clearing (%v), want the preallocated %d", st.Size(), err, audit.DefaultSegmentSize)
			}
			r := appendN(t, l, 100, 1)[0]
			l.Close()
			l = openLog(t, o)
			if l.LastSeq() != 5 {
				t.Fatalf("LastSeq after reopening again %d, want 5", l.LastSeq())
			}
			c := &cluster{t: t}
			run(t, l, c.deps())
			waitFor(t, "records shipped", func() bool { return c.Committed() == 5 })
			_, applied, _ := c.snapshot()
			checkApplied(t, applied, append(want[:4], r))
		})
	}
}

// TestOlderSegmentWithZeroTail reads across an older segment whose preallocated space was not
// used up (the writer moved on to a new segment early, as after skipping the sequence ahead).
func TestOlderSegmentWithZeroTail(t *testing.T) {
	dir := t.TempDir()
	o := audit.Options{Dir: dir}
	l := openLog(t, o)
	want := appendN(t, l, 1, 3)
	l.Close()
	if err := os.WriteFile(filepath.Join(dir, audit.SegmentName(4)), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, o)
	want = append(want, appendN(t, l, 4, 2)...)
	l.Close()

	// Data after the zeros of an older segment is corruption.
	first := segFiles(t, dir)[0]
	poke := func(b byte) {
		f, err := os.OpenFile(first, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte{b}, 4096); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	poke('x')
	if _, err := audit.Open(audit.Options{Dir: dir, NodeID: node}); !errors.Is(err, audit.ErrCorrupt) {
		t.Fatalf("Open with data after the zero tail of an older segment: %v, want ErrCorrupt", err)
	}
	poke(0)

	l = openLog(t, o)
	if l.LastSeq() != 5 {
		t.Fatalf("LastSeq after reopen %d, want 5", l.LastSeq())
	}
	c := &cluster{t: t}
	run(t, l, c.deps())
	waitFor(t, "records shipped", func() bool { return c.Committed() == 5 })
	_, applied, _ := c.snapshot()
	checkApplied(t, applied, want)
}

// TestSpareSegments rotates through segments prepared ahead as a spare file: a spare left by
// a crash (here full of junk) is not used, and Close removes the spare.
func TestSpareSegments(t *testing.T) {
	dir := t.TempDir()
	spare := filepath.Join(dir, "audit-spare.tmp")
	if err := os.WriteFile(spare, bytes.Repeat([]byte("junk\n"), 4000), 0o600); err != nil {
		t.Fatal(err)
	}
	o := audit.Options{Dir: dir, SegmentSize: 4096}
	l := openLog(t, o)
	want := appendN(t, l, 1, 100)
	if n := len(segFiles(t, dir)); n < 5 {
		t.Fatalf("%d segment files, want several", n)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(spare); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("spare segment left after Close: %v", err)
	}
	l = openLog(t, o)
	if l.LastSeq() != 100 {
		t.Fatalf("LastSeq after reopen %d, want 100", l.LastSeq())
	}
	c := &cluster{t: t}
	run(t, l, c.deps())
	waitFor(t, "records shipped", func() bool { return c.Committed() == 100 })
	_, applied, _ := c.snapshot()
	checkApplied(t, applied, want)
}

// TestOpensSegmentOfEarlierLayout opens a segment as earlier versions wrote it: not
// preallocated, and node_seq in the JSON where encoding/json puts it.
func TestOpensSegmentOfEarlierLayout(t *testing.T) {
	dir := t.TempDir()
	var seg []byte
	var want []fsm.AuditRecord
	for i := 1; i <= 3; i++ {
		r := rec(i)
		r.NodeID, r.NodeSeq = node, uint64(i)
		body, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		seg = fmt.Appendf(seg, "%08x %s\n", crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)), body)
		want = append(want, r)
	}
	path := filepath.Join(dir, audit.SegmentName(1))
	if err := os.WriteFile(path, seg, 0o600); err != nil {
		t.Fatal(err)
	}
	o := audit.Options{Dir: dir}
	l := openLog(t, o)
	if l.LastSeq() != 3 {
		t.Fatalf("LastSeq %d, want 3", l.LastSeq())
	}
	if st, err := os.Stat(path); err != nil || st.Size() != audit.DefaultSegmentSize {
		t.Fatalf("active segment size %d (%v), want it preallocated to %d", st.Size(), err, audit.DefaultSegmentSize)
	}
	want = append(want, appendN(t, l, 4, 1)...)
	l.Close()
	l = openLog(t, o)
	c := &cluster{t: t}
	run(t, l, c.deps())
	waitFor(t, "records shipped", func() bool { return c.Committed() == 4 })
	_, applied, _ := c.snapshot()
	checkApplied(t, applied, want)
}

// TestGroupAccumulatesDuringSync holds a sync in flight while appends arrive: they must all
// go out together in the next sync.
func TestGroupAccumulatesDuringSync(t *testing.T) {
	l := openLog(t, audit.Options{Dir: t.TempDir()})
	inSync, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	l.SetHook(func(op string, f *os.File) error {
		if op == "sync" {
			once.Do(func() {
				close(inSync)
				<-release
			})
		}
		return nil
	})
	const n = 20
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := l.Append(context.Background(), rec(0)); err != nil {
			t.Errorf("Append: %v", err)
		}
	})
	<-inSync
	for i := range n {
		wg.Go(func() {
			if _, err := l.Append(context.Background(), rec(i+1)); err != nil {
				t.Errorf("Append: %v", err)
			}
		})
	}
	waitFor(t, "appends queued behind the sync", func() bool { return l.Queued() == n })
	close(release)
	wg.Wait()
	if got := l.Stats().Syncs; got != 2 {
		t.Errorf("%d syncs for one record and %d that queued behind it, want 2", got, n)
	}
	if l.LastSeq() != n+1 {
		t.Errorf("LastSeq %d, want %d", l.LastSeq(), n+1)
	}
}
