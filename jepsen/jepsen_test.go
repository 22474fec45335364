package jepsen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// buildKeyward compiles ./cmd/keyward with the given build tags into a test temp dir.
func buildKeyward(t *testing.T, tags string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "keyward")
	args := []string{"build", "-o", out}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	cmd := exec.Command("go", append(args, "./cmd/keyward")...)
	cmd.Dir = ".."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", tags, err, b)
	}
	return out
}

// runDir is where a test's run directory goes: kept under $KEYWARD_JEPSEN_DIR when set (so CI
// can keep reports), else in the test's temp dir.
func runDir(t *testing.T, name string) string {
	if d := os.Getenv("KEYWARD_JEPSEN_DIR"); d != "" {
		return filepath.Join(d, name+"-"+time.Now().UTC().Format("20060102T150405Z"))
	}
	return filepath.Join(t.TempDir(), name)
}

// TestChaosShort is the short run of `make test`: every workload and every
// nemesis once, on three nodes, with all checkers. Network namespaces when root, loopback
// proxies otherwise.
func TestChaosShort(t *testing.T) {
	bin := buildKeyward(t, "")
	quiet, fault := 3*time.Second, 5*time.Second
	cfg := Config{
		Binary: bin, Dir: runDir(t, "short"), Nodes: 3,
		Workloads: AllWorkloads,
		Nemeses:   AllNemeses, Quiet: quiet, Fault: fault,
		Rounds: 1, Duration: 5 * time.Minute, // every nemesis once (~90 s), capped at 5 minutes
		Log: t.Logf,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	sum, err := Run(ctx, cfg)
	if err != nil {
		if sum != nil && sum.Report != nil {
			t.Log(sum.Report.Summary())
		}
		t.Fatalf("chaos run failed: %v (run directory %s)", err, cfg.Dir)
	}
	for _, f := range []string{"history.jsonl", "linearizability.html", "summary.json", "harness.log", "logs/n1.log"} {
		if st, err := os.Stat(filepath.Join(cfg.Dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("run directory lacks %s: %v", f, err)
		}
	}
	var onDisk Summary
	b, _ := os.ReadFile(filepath.Join(cfg.Dir, "summary.json"))
	if err := json.Unmarshal(b, &onDisk); err != nil || !onDisk.Valid || onDisk.Ops != sum.Ops {
		t.Errorf("summary.json: %v valid=%v ops=%d", err, onDisk.Valid, onDisk.Ops)
	}
	var hit []string
	for _, f := range sum.Report.Faults {
		hit = append(hit, f.Name)
		if f.RecoveryMS < 0 {
			t.Errorf("no operation succeeded after %s (%s) ended", f.Name, f.Detail)
		}
	}
	for _, n := range AllNemeses {
		if !slices.Contains(hit, n) {
			t.Errorf("nemesis %s never ran (faults: %v)", n, hit)
		}
	}
	if sum.Report.LinearOps == 0 || sum.Report.AckedWrites == 0 || sum.Report.AuditChecked == 0 || sum.Report.StaleReads == 0 {
		t.Errorf("a checker saw nothing: %+v", sum.Report)
	}
	t.Logf("%d operations %v; %s", sum.Ops, sum.ByOutcome, sum.Report.Summary())
}

// TestChaosCatchesUnsafeReads proves the suite bites: a keyward built with -tags
// keyward_unsafe answers linearizable reads from local state, and isolating the leader while
// it keeps serving reads must make the run fail with a linearizability violation.
func TestChaosCatchesUnsafeReads(t *testing.T) {
	bin := buildKeyward(t, "keyward_unsafe")
	cfg := Config{
		Binary: bin, Dir: runDir(t, "unsafe"), Nodes: 3,
		Workloads: []string{WRegister}, Nemeses: []string{NPartitionLeader},
		Quiet: 3 * time.Second, Fault: 8 * time.Second, Duration: 25 * time.Second,
		Log: t.Logf,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	sum, err := Run(ctx, cfg)
	if !errors.Is(err, ErrViolations) {
		t.Fatalf("the unsafe build passed the suite (err %v); run directory %s", err, cfg.Dir)
	}
	illegal := false
	for _, v := range sum.Report.Linearizable {
		illegal = illegal || v == "Illegal"
	}
	if !illegal || !strings.Contains(strings.Join(sum.Report.Violations, "\n"), "not linearizable") {
		t.Fatalf("expected a linearizability violation, got %v / %v", sum.Report.Linearizable, sum.Report.Violations)
	}
	t.Logf("caught: %v", sum.Report.Violations)
}

// TestRegisterModel checks the model on small hand-made histories, including an open-ended
// unknown write.
func TestRegisterModel(t *testing.T) {
	u := uint64(0)
	one := uint64(1)
	ok := func(id int64, f, val string, exp *uint64, ver uint64, call, ret int64) Op {
		return Op{ID: id, Workload: WRegister, F: f, Key: "k", Value: val, Expect: exp, Type: OK, Found: ver > 0, Version: ver, Invoke: call, Complete: ret}
	}
	good := []Op{
		ok(0, "cas", "a", &u, 1, 0, 10),
		ok(1, "read", "a", nil, 1, 11, 12),
		{ID: 2, Workload: WRegister, F: "write", Key: "k", Value: "b", Type: Info, Invoke: 13, Complete: 14},
		ok(3, "read", "b", nil, 2, 20, 21),
		{ID: 4, Workload: WRegister, F: "cas", Key: "k", Value: "c", Expect: &one, Type: Fail, Code: "cas_mismatch", CurrentVersion: ptr(uint64(2)), Invoke: 22, Complete: 23},
	}
	r := Check(good, nil, Final{}, nil, false, CheckOptions{LinTimeout: 10 * time.Second}, nil)
	if !r.Valid {
		t.Fatalf("valid history refused: %v", r.Violations)
	}
	stale := append(slices.Clone(good), ok(5, "read", "a", nil, 1, 30, 31))
	r = Check(stale, nil, Final{}, nil, false, CheckOptions{LinTimeout: 10 * time.Second}, nil)
	if r.Valid || r.Linearizable["k"] != "Illegal" {
		t.Fatalf("stale read accepted: %+v", r)
	}
}

func ptr[T any](v T) *T { return &v }

// TestListingProblems checks the version invariants.
func TestListingProblems(t *testing.T) {
	good := []VersionInfo{{Version: 1, State: "DEPRECATED"}, {Version: 2, State: "PREVIOUS"}, {Version: 3, State: "CURRENT"}}
	if p := listingProblems(good, 3); len(p) != 0 {
		t.Fatalf("good listing: %v", p)
	}
	for name, vs := range map[string][]VersionInfo{
		"gap":         {{Version: 1, State: "PREVIOUS"}, {Version: 3, State: "CURRENT"}},
		"two current": {{Version: 1, State: "CURRENT"}, {Version: 2, State: "CURRENT"}},
		"no current":  {{Version: 1, State: "PREVIOUS"}},
		"two prev":    {{Version: 1, State: "PREVIOUS"}, {Version: 2, State: "PREVIOUS"}, {Version: 3, State: "CURRENT"}},
		"duplicate":   {{Version: 1, State: "PREVIOUS"}, {Version: 1, State: "CURRENT"}},
	} {
		if p := listingProblems(vs, 0); len(p) == 0 {
			t.Errorf("%s: no problem found", name)
		}
	}
}

// TestCheckers feeds each checker a small history with one planted problem.
func TestCheckers(t *testing.T) {
	s := int64(time.Second)
	w := func(id int64, key, val string, ver uint64, vid string, call, ret int64) Op {
		return Op{ID: id, Workload: WVersions, F: "write", Key: key, Value: val, Type: OK, Version: ver, VersionID: vid, Invoke: call, Complete: ret, RequestID: fmt.Sprint("r", id)}
	}
	base := []Op{w(0, "k", "a", 1, "id1", 0, s/10), w(1, "k", "b", 2, "id2", s, s+s/10)}
	fin := Final{OK: true, Versions: map[string][]VersionInfo{"k": {{Version: 1, VersionID: "id1", State: "PREVIOUS"}, {Version: 2, VersionID: "id2", State: "CURRENT"}}},
		Current: map[string]uint64{"k": 2}, Values: map[string]map[uint64]string{"k": {1: "a", 2: "b"}}}
	audited := map[string]bool{"r0": true, "r1": true}
	opt := CheckOptions{LinTimeout: 10 * time.Second, StaleAllowance: time.Second}
	if r := Check(base, nil, fin, audited, true, opt, nil); !r.Valid {
		t.Fatalf("clean history refused: %v", r.Violations)
	}
	cases := map[string]struct {
		ops     []Op
		fin     func(Final) Final
		audited map[string]bool
		want    string
	}{
		"lost write": {fin: func(f Final) Final {
			f.Versions = map[string][]VersionInfo{"k": {{Version: 1, VersionID: "id1", State: "PREVIOUS"}, {Version: 2, VersionID: "other", State: "CURRENT"}}}
			return f
		}, want: "lost write"},
		"phantom": {fin: func(f Final) Final {
			f.Values = map[string]map[uint64]string{"k": {1: "a", 2: "zzz"}}
			return f
		}, want: "phantom"},
		"stale": {ops: []Op{{ID: 2, Workload: WStale, F: "read-stale", Key: "k", Type: OK, Found: true, Version: 1, Value: "a", MaxStale: 2 * s, Invoke: 5 * s, Complete: 5*s + 1}},
			want: "stale read"},
		"audit": {audited: map[string]bool{"r0": true}, want: "audit"},
		"monotonic": {ops: []Op{
			{ID: 3, Workload: WVersions, F: "read-state", State: "CURRENT", RespState: "CURRENT", Key: "k", Type: OK, Found: true, Version: 2, Invoke: 2 * s, Complete: 2*s + 1},
			{ID: 4, Workload: WVersions, F: "read-state", State: "CURRENT", RespState: "CURRENT", Key: "k", Type: OK, Found: true, Version: 1, Invoke: 3 * s, Complete: 3*s + 1},
		}, want: "monotonic"},
		"listing misses a write": {ops: []Op{{ID: 5, Workload: WVersions, F: "list", Key: "k", Type: OK, Found: true, Version: 1,
			Listing: NewListing([]VersionInfo{{Version: 1, VersionID: "id1", State: "CURRENT"}}, 1), Invoke: 3 * s, Complete: 3*s + 1}}, want: "misses v2"},
		"listing with two CURRENT": {ops: []Op{{ID: 8, Workload: WVersions, F: "list", Key: "k", Type: OK, Found: true, Version: 2,
			Listing: NewListing([]VersionInfo{{Version: 1, VersionID: "id1", State: "CURRENT"}, {Version: 2, VersionID: "id2", State: "CURRENT"}}, 2), Invoke: 3 * s, Complete: 3*s + 1}}, want: "2 CURRENT"},
	}
	for name, c := range cases {
		f := fin
		if c.fin != nil {
			f = c.fin(fin)
		}
		a := audited
		if c.audited != nil {
			a = c.audited
		}
		r := Check(append(slices.Clone(base), c.ops...), nil, f, a, true, opt, nil)
		if r.Valid || !strings.Contains(strings.Join(r.Violations, "\n"), c.want) {
			t.Errorf("%s: want a %q violation, got %v", name, c.want, r.Violations)
		}
	}
	// A stale read within the bound passes; with LenientStale a violation is only known.
	ok := Op{ID: 6, Workload: WStale, F: "read-stale", Key: "k", Type: OK, Found: true, Version: 1, Value: "a", MaxStale: 2 * s, Invoke: 3 * s, Complete: 3*s + 1}
	if r := Check(append(slices.Clone(base), ok), nil, fin, nil, false, opt, nil); !r.Valid {
		t.Errorf("stale read within the bound refused: %v", r.Violations)
	}
	lenient := opt
	lenient.LenientStale = true
	if r := Check(append(slices.Clone(base), cases["stale"].ops...), nil, fin, nil, false, lenient, nil); !r.Valid || len(r.Known) != 1 {
		t.Errorf("lenient stale: valid=%v known=%v", r.Valid, r.Known)
	}
	// Recovery: the first success invoked after the fault ended.
	evs := []Event{{Name: NKill, Phase: "start", Time: s / 2}, {Name: NKill, Phase: "stop", Time: s / 2 * 3}}
	rec := append(slices.Clone(base), Op{ID: 7, Workload: WRegister, F: "read", Key: "r", Type: OK, Invoke: 2 * s, Complete: 2*s + s/5})
	r := Check(rec, evs, Final{}, nil, false, opt, nil)
	if len(r.Faults) != 1 || r.Faults[0].RecoveryMS != 700 {
		t.Errorf("recovery: %+v", r.Faults)
	}
}
