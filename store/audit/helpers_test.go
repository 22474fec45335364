package audit_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/fsm"
	"github.com/keyward/keyward/store/audit"
)

const node = "node-a"

// secretMarker is put in every record so tests can check that logs never carry record content.
const secretMarker = "s3cr3t-path-marker"

func openLog(t testing.TB, o audit.Options) *audit.Log {
	t.Helper()
	if o.NodeID == "" {
		o.NodeID = node
	}
	if o.ShipInterval == 0 {
		o.ShipInterval = 100 * time.Millisecond // the 1 s default would only slow the tests down
	}
	l, err := audit.Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func rec(i int) fsm.AuditRecord {
	return fsm.AuditRecord{
		ID:          fmt.Sprintf("rec-%d", i),
		Path:        "team/" + secretMarker + "/db",
		PrincipalID: "svc-" + secretMarker,
		Action:      "READ",
		Success:     i%3 != 0,
		Reason:      "reason " + secretMarker,
		AccessedAt:  time.Now().UnixNano(),
	}
}

func appendN(t testing.TB, l *audit.Log, from, n int) []fsm.AuditRecord {
	t.Helper()
	var out []fsm.AuditRecord
	for i := from; i < from+n; i++ {
		r, err := l.Append(context.Background(), rec(i))
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		out = append(out, r)
	}
	return out
}

// segFiles lists the segment files in dir, sorted.
func segFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "audit-*.log"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(m)
	return m
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// cluster is a fake of the Raft side: it applies shipped batches the way the FSM does,
// dropping records at or below the node's committed NodeSeq, and checks that what arrives is
// in order with no gap.
type cluster struct {
	t *testing.T

	mu        sync.Mutex
	committed uint64
	applied   []fsm.AuditRecord
	calls     [][]uint64 // NodeSeqs of each Ship call
	// fail, if set, decides the outcome of Ship call n (1-based): whether the batch commits,
	// and the error returned.
	fail func(n int) (commit bool, err error)
}

func (c *cluster) deps() audit.ShipDeps {
	return audit.ShipDeps{Ship: c.ship, Committed: c.Committed}
}

func (c *cluster) Committed() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.committed
}

func (c *cluster) ship(ctx context.Context, batch *fsm.AppendAuditLines) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	recs, err := batch.Records()
	if err != nil || len(recs) != len(batch.Seqs) || batch.NodeID != node {
		c.t.Errorf("Ship call %d: batch of node %q does not decode (%v) or has %d records for %d seqs",
			len(c.calls)+1, batch.NodeID, err, len(recs), len(batch.Seqs))
	}
	// Every line is the record's canonical form, which the hash chain covers.
	var canon []byte
	for i, r := range recs {
		if r.NodeSeq != batch.Seqs[i] {
			c.t.Errorf("Ship call %d: line %d has NodeSeq %d, batch says %d", len(c.calls)+1, i, r.NodeSeq, batch.Seqs[i])
		}
		canon = append(append(canon, fsm.CanonicalAudit(r)...), '\n')
	}
	if !bytes.Equal(canon, batch.Data) {
		c.t.Errorf("Ship call %d: lines are not the records' canonical form", len(c.calls)+1)
	}
	seqs := make([]uint64, len(recs))
	for i, r := range recs {
		seqs[i] = r.NodeSeq
		if r.NodeID != node {
			c.t.Errorf("shipped a record of node %q", r.NodeID)
		}
		if i > 0 && r.NodeSeq != recs[i-1].NodeSeq+1 {
			c.t.Errorf("Ship call %d: NodeSeq %d follows %d", len(c.calls)+1, r.NodeSeq, recs[i-1].NodeSeq)
		}
	}
	c.calls = append(c.calls, seqs)
	if len(recs) == 0 {
		c.t.Errorf("empty Ship call")
		return nil
	}
	if recs[0].NodeSeq > c.committed+1 {
		c.t.Errorf("Ship call %d starts at %d but the cluster has committed only %d: a gap", len(c.calls), recs[0].NodeSeq, c.committed)
	}
	commit := true
	err = nil
	if c.fail != nil {
		commit, err = c.fail(len(c.calls))
	}
	if commit {
		for _, r := range recs {
			if r.NodeSeq <= c.committed {
				continue
			}
			c.applied = append(c.applied, r)
			c.committed = r.NodeSeq
		}
	}
	return err
}

func (c *cluster) snapshot() (committed uint64, applied []fsm.AuditRecord, calls [][]uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.committed, slices.Clone(c.applied), slices.Clone(c.calls)
}

// run starts l.Run with c and returns a function that stops it and waits for it.
func run(t testing.TB, l *audit.Log, d audit.ShipDeps) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.Run(ctx, d)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Errorf("Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// checkApplied checks that the cluster holds exactly want, in order.
func checkApplied(t *testing.T, got, want []fsm.AuditRecord) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("cluster has %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].ID != want[i].ID || got[i].NodeSeq != want[i].NodeSeq || got[i].Path != want[i].Path {
			t.Fatalf("record %d: got id %s seq %d, want id %s seq %d", i, got[i].ID, got[i].NodeSeq, want[i].ID, want[i].NodeSeq)
		}
	}
}

// logBuffer is a slog handler target that is safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func debugLogger(b *logBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

var errInjected = errors.New("injected failure")

// onceHook returns a hook that runs act the first time op comes up.
func onceHook(op string, act func(f *os.File) error) func(string, *os.File) error {
	var once sync.Once
	return func(o string, f *os.File) error {
		var err error
		if o == op {
			once.Do(func() { err = act(f) })
		}
		return err
	}
}

// appendConcurrently appends goroutines×each records from goroutines goroutines and checks that
// every Append succeeded and that their NodeSeqs are unique and gapless from 1.
func appendConcurrently(t *testing.T, l *audit.Log, goroutines, each int) {
	t.Helper()
	var mu sync.Mutex
	var seqs []uint64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				r, err := l.Append(context.Background(), rec(g*each+i))
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				mu.Lock()
				seqs = append(seqs, r.NodeSeq)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if n := goroutines * each; len(seqs) != n {
		t.Fatalf("%d appends succeeded, want %d", len(seqs), n)
	}
	slices.Sort(seqs)
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("sorted NodeSeqs: position %d holds %d: not unique and gapless", i, s)
		}
	}
}
