package audit_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/keyward/keyward/fsm"
	"github.com/keyward/keyward/store/audit"
)

func TestRunShipsInOrderAndDeletesSegments(t *testing.T) {
	const maxBatch = 7
	dir := t.TempDir()
	var logs logBuffer
	l := openLog(t, audit.Options{Dir: dir, MaxBatch: maxBatch, SegmentSize: 1024, Log: debugLogger(&logs)})
	want := appendN(t, l, 1, 100)
	if n := len(segFiles(t, dir)); n < 5 {
		t.Fatalf("%d segment files, want several", n)
	}
	c := &cluster{t: t}
	run(t, l, c.deps())

	// More records while Run is shipping, from several goroutines.
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 5 {
		wg.Go(func() {
			for i := range 20 {
				r, err := l.Append(context.Background(), rec(1000+g*20+i))
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				mu.Lock()
				want = append(want, r)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	waitFor(t, "all records committed", func() bool { return c.Committed() == 200 })
	waitFor(t, "committed segments deleted", func() bool { return len(segFiles(t, dir)) == 1 && l.Pending() == 0 })

	_, applied, calls := c.snapshot()
	byID := map[string]fsm.AuditRecord{}
	for _, r := range want {
		byID[r.ID] = r
	}
	for i, r := range applied {
		if r.NodeSeq != uint64(i+1) {
			t.Fatalf("applied record %d has NodeSeq %d", i, r.NodeSeq)
		}
		if w, ok := byID[r.ID]; !ok || w.NodeSeq != r.NodeSeq || w.Reason != r.Reason || w.AccessedAt != r.AccessedAt {
			t.Fatalf("applied record %d (%s) does not match what Append returned", i, r.ID)
		}
	}
	var shipped uint64
	for i, call := range calls {
		if len(call) > maxBatch {
			t.Errorf("Ship call %d has %d records, MaxBatch is %d", i+1, len(call), maxBatch)
		}
		if call[0] != shipped+1 {
			t.Errorf("Ship call %d starts at %d after %d: re-shipped or skipped", i+1, call[0], shipped)
		}
		shipped = call[len(call)-1]
	}
	if n := len(calls); n < 200/maxBatch {
		t.Errorf("%d Ship calls for 200 records", n)
	}

	// The active segment is never deleted, and new records still ship promptly.
	r := appendN(t, l, 5000, 1)[0]
	waitFor(t, "a later record committed", func() bool { return c.Committed() == r.NodeSeq })
	if strings.Contains(logs.String(), secretMarker) {
		t.Errorf("the log output carries record content:\n%s", logs.String())
	}
}

func TestRunRetriesFailedShips(t *testing.T) {
	dir := t.TempDir()
	var logs logBuffer
	l := openLog(t, audit.Options{Dir: dir, MaxBatch: 10, SegmentSize: 2048, Log: debugLogger(&logs)})
	want := appendN(t, l, 1, 95)
	c := &cluster{t: t, fail: func(n int) (bool, error) {
		switch n {
		case 1, 2, 4, 5:
			return false, errors.New("no leader") // nothing committed
		case 7, 9:
			return true, errors.New("leadership lost") // committed, but the caller cannot know
		}
		return true, nil
	}}
	run(t, l, c.deps())
	waitFor(t, "all records committed", func() bool { return c.Committed() == 95 })
	waitFor(t, "committed segments deleted", func() bool { return len(segFiles(t, dir)) == 1 })
	_, applied, calls := c.snapshot()
	checkApplied(t, applied, want)
	// A failed batch is retried as it was, never reordered: the first calls repeat 1..10.
	for _, i := range []int{0, 1, 2} {
		if calls[i][0] != 1 || len(calls[i]) != 10 {
			t.Errorf("call %d shipped %v, want 1..10 again", i+1, calls[i])
		}
	}
	if !strings.Contains(logs.String(), "level=WARN") || strings.Contains(logs.String(), secretMarker) {
		t.Errorf("want a warning without record content, got:\n%s", logs.String())
	}
}

func TestRunSkipsCommittedRecords(t *testing.T) {
	l := openLog(t, audit.Options{Dir: t.TempDir(), MaxBatch: 8, SegmentSize: 1024})
	want := appendN(t, l, 1, 50)
	c := &cluster{t: t, committed: 30}
	run(t, l, c.deps())
	waitFor(t, "all records committed", func() bool { return c.Committed() == 50 })
	_, applied, calls := c.snapshot()
	if calls[0][0] != 31 {
		t.Errorf("first Ship call starts at %d, want 31", calls[0][0])
	}
	checkApplied(t, applied, want[30:])
	waitFor(t, "nothing pending", func() bool { return l.Pending() == 0 })
}

func TestReopenShipsUnshippedRecords(t *testing.T) {
	dir := t.TempDir()
	o := audit.Options{Dir: dir, MaxBatch: 10, SegmentSize: 1024}
	l := openLog(t, o)
	want := appendN(t, l, 1, 40)
	c := &cluster{t: t, fail: func(n int) (bool, error) {
		if n <= 2 {
			return true, nil
		}
		return false, errors.New("cluster unreachable")
	}}
	stop := run(t, l, c.deps())
	waitFor(t, "two batches committed, then failures", func() bool {
		_, _, calls := c.snapshot()
		return len(calls) >= 3
	})
	stop()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := c.Committed(); got != 20 {
		t.Fatalf("committed %d before the restart, want 20", got)
	}

	l = openLog(t, o)
	if l.Pending() < 20 {
		t.Fatalf("Pending after reopen %d, want at least the 20 unshipped", l.Pending())
	}
	c.mu.Lock()
	c.fail = nil
	c.mu.Unlock()
	run(t, l, c.deps())
	waitFor(t, "the rest committed", func() bool { return c.Committed() == 40 && l.Pending() == 0 })
	_, applied, _ := c.snapshot()
	checkApplied(t, applied, want)
}

func TestRunSkipsAheadOfClusterMark(t *testing.T) {
	dir := t.TempDir()
	var logs logBuffer
	o := audit.Options{Dir: dir, Log: debugLogger(&logs)}
	l := openLog(t, o)
	appendN(t, l, 1, 5)
	// The cluster already holds records 1..1000 of this NodeID (say the directory was lost).
	c := &cluster{t: t, committed: 1000}
	stop := run(t, l, c.deps())
	waitFor(t, "the sequence to skip ahead", func() bool { return l.LastSeq() == 1000 })
	r := appendN(t, l, 6, 1)[0]
	if r.NodeSeq != 1001 {
		t.Fatalf("Append after the skip got NodeSeq %d, want 1001", r.NodeSeq)
	}
	waitFor(t, "the new record committed", func() bool { return c.Committed() == 1001 })
	waitFor(t, "old segment deleted", func() bool { return len(segFiles(t, dir)) == 1 })
	if !strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("no error logged for the skip:\n%s", logs.String())
	}
	stop()
	l.Close()

	// A skip with no record after it survives a restart too.
	l = openLog(t, o)
	c = &cluster{t: t, committed: 5000}
	stop = run(t, l, c.deps())
	waitFor(t, "the sequence to skip ahead", func() bool { return l.LastSeq() == 5000 })
	stop()
	l.Close()
	if files := segFiles(t, dir); filepath.Base(files[len(files)-1]) != audit.SegmentName(5001) {
		t.Fatalf("segment files %v, want the last one named for 5001", files)
	}
	l = openLog(t, o)
	if r := appendN(t, l, 7, 1)[0]; r.NodeSeq != 5001 {
		t.Fatalf("Append after reopen got NodeSeq %d, want 5001", r.NodeSeq)
	}
}

func TestRunReturnsOnClose(t *testing.T) {
	l := openLog(t, audit.Options{Dir: t.TempDir()})
	c := &cluster{t: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.Run(context.Background(), c.deps())
	}()
	appendN(t, l, 1, 3)
	waitFor(t, "records committed", func() bool { return c.Committed() == 3 })
	l.Close()
	waitFor(t, "Run to return", func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	})
}
