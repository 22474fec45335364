package audit_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/store/audit"
)

// TestGroupDelayLoneAppender: a lone appender's group (one record) is written at once; with a
// gathering window of an hour every Append here would otherwise run into its deadline.
func TestGroupDelayLoneAppender(t *testing.T) {
	l := openLog(t, audit.Options{Dir: t.TempDir(), GroupDelay: time.Hour})
	for i := range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := l.Append(ctx, rec(i))
		cancel()
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		if r.NodeSeq != uint64(i+1) {
			t.Fatalf("Append %d got NodeSeq %d", i, r.NodeSeq)
		}
	}
}

// TestGroupDelaySharesSyncs: while appends come concurrently the writer gathers them, so that
// most of the appenders share each sync; every record is durable once, in a gapless sequence.
func TestGroupDelaySharesSyncs(t *testing.T) {
	const goroutines, each = 50, 20
	l := openLog(t, audit.Options{Dir: t.TempDir(), GroupDelay: 20 * time.Millisecond})
	const n = goroutines * each
	appendConcurrently(t, l, goroutines, each)
	syncs := l.Stats().Syncs
	t.Logf("%d records, %d fsyncs (%.1f records per fsync)", n, syncs, float64(n)/float64(syncs))
	if syncs*goroutines/2 > n {
		t.Errorf("%d fsyncs for %d records from %d appenders: the window does not gather them", syncs, n, goroutines)
	}
	if l.LastSeq() != n {
		t.Errorf("LastSeq %d, want %d", l.LastSeq(), n)
	}
}

// TestGroupDelayClose: Close ends a gathering window at once (an hour here) and makes what was
// appended durable; Appends that come after it get ErrClosed.
func TestGroupDelayClose(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, audit.Options{Dir: dir, GroupDelay: time.Hour})
	// Concurrent appends: after a group of more than one record the writer gathers for an
	// hour before the next, which only Close can cut short.
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 32 {
		wg.Go(func() {
			_, err := l.Append(context.Background(), rec(g))
			errs <- err
		})
	}
	// Wait until some group is durable, then close while the writer may be gathering.
	deadline := time.Now().Add(10 * time.Second)
	for l.LastSeq() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()
	close(errs)
	ok := 0
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, audit.ErrClosed):
			t.Errorf("Append: %v, want success or ErrClosed", err)
		}
	}
	l2 := openLog(t, audit.Options{Dir: dir, GroupDelay: -1})
	if l2.LastSeq() != uint64(ok) {
		t.Errorf("after reopening LastSeq is %d, want %d: every acknowledged append durable, no other", l2.LastSeq(), ok)
	}
}
