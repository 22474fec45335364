package audit_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/keyward/keyward/store/audit"
)

func TestAppendAssignsSequence(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "audit")
	l := openLog(t, audit.Options{Dir: dir})
	if l.LastSeq() != 0 || l.Pending() != 0 {
		t.Fatalf("fresh log: LastSeq %d Pending %d", l.LastSeq(), l.Pending())
	}
	in := rec(1)
	in.NodeID, in.NodeSeq = "forged", 99
	got, err := l.Append(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if got.NodeID != node || got.NodeSeq != 1 || got.ID != in.ID || got.Path != in.Path {
		t.Fatalf("Append returned %+v", got)
	}
	for i, r := range appendN(t, l, 2, 9) {
		if r.NodeSeq != uint64(i+2) {
			t.Fatalf("record %d got NodeSeq %d", i+2, r.NodeSeq)
		}
	}
	if l.LastSeq() != 10 || l.Pending() != 10 {
		t.Fatalf("LastSeq %d Pending %d, want 10 and 10", l.LastSeq(), l.Pending())
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v, want 0700", st.Mode().Perm())
	}
	if files := segFiles(t, dir); len(files) != 1 || filepath.Base(files[0]) != audit.SegmentName(1) {
		t.Errorf("segment files %v", files)
	}
}

func TestOpenCreatesDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	l := openLog(t, audit.Options{Dir: dir})
	appendN(t, l, 1, 1)
	if _, err := audit.Open(audit.Options{Dir: "", NodeID: node}); err == nil {
		t.Error("Open without Dir succeeded")
	}
	if _, err := audit.Open(audit.Options{Dir: t.TempDir()}); err == nil {
		t.Error("Open without NodeID succeeded")
	}
}

func TestConcurrentAppendsShareFsyncs(t *testing.T) {
	const goroutines, each = 50, 40
	l := openLog(t, audit.Options{Dir: t.TempDir()})
	const n = goroutines * each
	appendConcurrently(t, l, goroutines, each)
	st := l.Stats()
	syncs := st.Syncs
	t.Logf("%d records, %d fsyncs (%.1f records per fsync)", n, syncs, float64(n)/float64(syncs))
	if st.Records != n {
		t.Errorf("Stats().Records = %d, want %d", st.Records, n)
	}
	if syncs*4 > n {
		t.Errorf("%d fsyncs for %d records: group commit is not sharing fsyncs", syncs, n)
	}
	if l.LastSeq() != n {
		t.Errorf("LastSeq %d, want %d", l.LastSeq(), n)
	}
}

func TestAppendAfterClose(t *testing.T) {
	l := openLog(t, audit.Options{Dir: t.TempDir()})
	appendN(t, l, 1, 3)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := l.Append(context.Background(), rec(4)); !errors.Is(err, audit.ErrClosed) {
		t.Fatalf("Append after Close: %v, want ErrClosed", err)
	}
}

func TestAppendContextDone(t *testing.T) {
	l := openLog(t, audit.Options{Dir: t.TempDir()})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Append(ctx, rec(1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a done context: %v", err)
	}
	if r := appendN(t, l, 2, 1)[0]; r.NodeSeq != 1 {
		t.Fatalf("next Append got NodeSeq %d, want 1", r.NodeSeq)
	}
}

func TestReopenContinuesSequence(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, audit.Options{Dir: dir, SegmentSize: 600})
	appendN(t, l, 1, 10)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(segFiles(t, dir)); n < 3 {
		t.Fatalf("%d segment files, want several", n)
	}
	l = openLog(t, audit.Options{Dir: dir, SegmentSize: 600})
	if l.LastSeq() != 10 || l.Pending() != 10 {
		t.Fatalf("after reopen LastSeq %d Pending %d, want 10 and 10", l.LastSeq(), l.Pending())
	}
	if r := appendN(t, l, 11, 1)[0]; r.NodeSeq != 11 {
		t.Fatalf("Append after reopen got NodeSeq %d, want 11", r.NodeSeq)
	}
}

// lastSegment returns the path and records (the content without the zeros of its
// preallocated space) of the newest segment file.
func lastSegment(t *testing.T, dir string) (string, []byte) {
	t.Helper()
	files := segFiles(t, dir)
	return files[len(files)-1], segRecords(t, files[len(files)-1])
}

// segRecords returns the content of a segment file without the zeros of its preallocated
// space.
func segRecords(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimRight(b, "\x00")
}

func TestTornTailIsDropped(t *testing.T) {
	cases := map[string]func(b []byte) []byte{
		// The last line lost its end.
		"cut mid-line": func(b []byte) []byte { return b[:len(b)-40] },
		// The last line lost only its newline.
		"no newline": func(b []byte) []byte { return b[:len(b)-1] },
		// The file grew but the last line's data never reached the disk.
		"zero-filled": func(b []byte) []byte {
			i := lastLineStart(b)
			return append(b[:i], make([]byte, len(b)-i+100)...)
		},
		// The last line is garbage that happens to end in a newline.
		"garbage line": func(b []byte) []byte {
			i := lastLineStart(b)
			return append(b[:i], []byte("0badc0de {\"id\":\"half\n")...)
		},
	}
	for name, tear := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, audit.Options{Dir: dir})
			want := appendN(t, l, 1, 5)
			l.Close()
			path, b := lastSegment(t, dir)
			if err := os.WriteFile(path, tear(b), 0o600); err != nil {
				t.Fatal(err)
			}

			l = openLog(t, audit.Options{Dir: dir})
			if l.LastSeq() != 4 {
				t.Fatalf("LastSeq after a torn tail %d, want 4", l.LastSeq())
			}
			r := appendN(t, l, 100, 1)[0]
			if r.NodeSeq != 5 {
				t.Fatalf("Append after a torn tail got NodeSeq %d, want 5", r.NodeSeq)
			}
			c := &cluster{t: t}
			run(t, l, c.deps())
			waitFor(t, "records shipped", func() bool { return c.Committed() == 5 })
			_, applied, _ := c.snapshot()
			checkApplied(t, applied, append(want[:4], r))
		})
	}
}

// lastLineStart is the offset of the last line of b (which ends in a newline).
func lastLineStart(b []byte) int {
	return strings.LastIndexByte(string(b[:len(b)-1]), '\n') + 1
}

func TestCorruptionIsRefused(t *testing.T) {
	t.Run("middle line", func(t *testing.T) {
		dir := t.TempDir()
		l := openLog(t, audit.Options{Dir: dir})
		appendN(t, l, 1, 5)
		l.Close()
		path, b := lastSegment(t, dir)
		second := strings.IndexByte(string(b), '\n') + 1
		b[second+30] ^= 0x01 // one flipped bit inside the second record
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := audit.Open(audit.Options{Dir: dir, NodeID: node})
		if !errors.Is(err, audit.ErrCorrupt) || !strings.Contains(err.Error(), filepath.Base(path)) {
			t.Fatalf("Open of a log with a corrupt middle line: %v, want ErrCorrupt naming the file", err)
		}
		t.Logf("Open: %v", err)
	})
	t.Run("tail of an older segment", func(t *testing.T) {
		dir := t.TempDir()
		l := openLog(t, audit.Options{Dir: dir, SegmentSize: 600})
		appendN(t, l, 1, 10)
		l.Close()
		files := segFiles(t, dir)
		b := segRecords(t, files[0])
		if err := os.WriteFile(files[0], b[:len(b)-10], 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := audit.Open(audit.Options{Dir: dir, NodeID: node}); !errors.Is(err, audit.ErrCorrupt) {
			t.Fatalf("Open with a cut older segment: %v, want ErrCorrupt", err)
		}
	})
	t.Run("missing record", func(t *testing.T) {
		dir := t.TempDir()
		l := openLog(t, audit.Options{Dir: dir})
		appendN(t, l, 1, 5)
		l.Close()
		path, b := lastSegment(t, dir)
		lines := strings.SplitAfter(string(b), "\n")
		lines = slices.Delete(lines, 2, 3)
		if err := os.WriteFile(path, []byte(strings.Join(lines, "")), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := audit.Open(audit.Options{Dir: dir, NodeID: node}); !errors.Is(err, audit.ErrCorrupt) {
			t.Fatalf("Open with a record missing: %v, want ErrCorrupt", err)
		}
	})
	t.Run("another node's log", func(t *testing.T) {
		dir := t.TempDir()
		l := openLog(t, audit.Options{Dir: dir})
		appendN(t, l, 1, 2)
		l.Close()
		_, err := audit.Open(audit.Options{Dir: dir, NodeID: "node-b"})
		if !errors.Is(err, audit.ErrCorrupt) || !strings.Contains(err.Error(), "node-b") {
			t.Fatalf("Open of another node's log: %v", err)
		}
	})
}

func TestWriteFailureFailsClosedAndRecovers(t *testing.T) {
	for _, tc := range []struct {
		name string
		op   string
		act  func(f *os.File) error
	}{
		// The segment's file descriptor is closed underneath the writer: the real write fails.
		{"fd closed", "write", func(f *os.File) error { f.Close(); return nil }},
		{"write error", "write", func(*os.File) error { return errInjected }},
		// The data reaches the file but fsync fails: the repair must cut it off again.
		{"fsync error", "sync", func(*os.File) error { return errInjected }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var logs logBuffer
			l := openLog(t, audit.Options{Dir: dir, Log: debugLogger(&logs)})
			acked := appendN(t, l, 1, 3)
			l.SetHook(onceHook(tc.op, tc.act))
			if _, err := l.Append(context.Background(), rec(4)); !errors.Is(err, audit.ErrUnavailable) {
				t.Fatalf("Append during a write failure: %v, want ErrUnavailable", err)
			}
			if l.LastSeq() != 3 {
				t.Fatalf("LastSeq %d after a failed append, want 3", l.LastSeq())
			}
			// The next Append repairs the segment and reuses the NodeSeq that failed.
			r := appendN(t, l, 5, 1)[0]
			if r.NodeSeq != 4 {
				t.Fatalf("Append after recovery got NodeSeq %d, want 4", r.NodeSeq)
			}
			acked = append(acked, r)
			acked = append(acked, appendN(t, l, 6, 2)...)
			l.Close()

			l = openLog(t, audit.Options{Dir: dir, Log: debugLogger(&logs)})
			if l.LastSeq() != 6 {
				t.Fatalf("LastSeq after reopen %d, want 6", l.LastSeq())
			}
			c := &cluster{t: t}
			run(t, l, c.deps())
			waitFor(t, "records shipped", func() bool { return c.Committed() == 6 })
			_, applied, _ := c.snapshot()
			checkApplied(t, applied, acked)
			if strings.Contains(logs.String(), secretMarker) {
				t.Errorf("the log output carries record content:\n%s", logs.String())
			}
		})
	}
}

func TestConcurrentAppendsDuringFsyncFailure(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, audit.Options{Dir: dir, SegmentSize: 4096})
	var fails sync.Mutex
	failing := 0
	l.SetHook(func(op string, f *os.File) error {
		fails.Lock()
		defer fails.Unlock()
		failing++
		if op == "sync" && failing%7 == 0 {
			return errInjected
		}
		return nil
	})
	var mu sync.Mutex
	var acked []uint64
	var unavailable int
	var wg sync.WaitGroup
	for g := range 20 {
		wg.Go(func() {
			for i := range 30 {
				r, err := l.Append(context.Background(), rec(g*100+i))
				mu.Lock()
				switch {
				case err == nil:
					acked = append(acked, r.NodeSeq)
				case errors.Is(err, audit.ErrUnavailable):
					unavailable++
				default:
					t.Errorf("Append: %v", err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(acked)
	for i, s := range acked {
		if s != uint64(i+1) {
			t.Fatalf("acknowledged NodeSeqs are not gapless: position %d holds %d", i, s)
		}
	}
	t.Logf("%d acknowledged, %d unavailable", len(acked), unavailable)
	if unavailable == 0 {
		t.Error("no Append failed")
	}
	n := uint64(len(acked))
	l.Close()
	l = openLog(t, audit.Options{Dir: dir, SegmentSize: 4096})
	if l.LastSeq() != n {
		t.Fatalf("LastSeq after reopen %d, want %d", l.LastSeq(), n)
	}
	c := &cluster{t: t}
	run(t, l, c.deps())
	waitFor(t, "records shipped", func() bool { return c.Committed() == n })
}
