package main

import (
	"encoding/json"
	"encoding/pem"
	"errors"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/api/wire"
)

func TestHistogramPercentiles(t *testing.T) {
	// 100µs, 200µs, ... 1s: exact quantiles are known.
	var h latencyHistogram
	for i := 1; i <= 10000; i++ {
		h.record(time.Duration(i) * 100 * time.Microsecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.9, 900 * time.Millisecond}, {0.99, 990 * time.Millisecond}, {1, time.Second}} {
		if got := h.quantile(tc.q); !withinRel(got, tc.want, 0.01) {
			t.Errorf("p%v = %v, want %v ± 1%%", tc.q*100, got, tc.want)
		}
	}
	if h.count() != 10000 || h.max != time.Second || h.min != 100*time.Microsecond || h.mean() != 500050*time.Microsecond {
		t.Errorf("count %d min %v max %v mean %v", h.count(), h.min, h.max, h.mean())
	}

	// Log-uniform durations over the whole range, recorded into two halves and merged,
	// against the exact order statistics.
	rng := rand.New(rand.NewPCG(1, 2))
	var a, b latencyHistogram
	vals := make([]time.Duration, 50000)
	for i := range vals {
		vals[i] = time.Duration(float64(histMin) * math.Exp(rng.Float64()*math.Log(float64(10*time.Second)/float64(histMin))))
		if i%2 == 0 {
			a.record(vals[i])
		} else {
			b.record(vals[i])
		}
	}
	a.merge(&b)
	slices.Sort(vals)
	for _, q := range []float64{0.01, 0.25, 0.5, 0.9, 0.99, 0.999} {
		want := vals[int(math.Ceil(q*float64(len(vals))))-1]
		if got := a.quantile(q); !withinRel(got, want, 0.01) {
			t.Errorf("log-uniform p%v = %v, want %v ± 1%%", q*100, got, want)
		}
	}
	if a.quantile(1) != vals[len(vals)-1] || a.count() != uint64(len(vals)) {
		t.Errorf("max %v, want %v; count %d", a.quantile(1), vals[len(vals)-1], a.count())
	}

	// Out of range and empty.
	var o latencyHistogram
	if o.quantile(0.5) != 0 || o.mean() != 0 {
		t.Error("empty histogram not 0")
	}
	o.record(10 * time.Microsecond)
	o.record(20 * time.Microsecond)
	o.record(time.Minute)
	if got := o.quantile(0.5); got < 10*time.Microsecond || got > histMin {
		t.Errorf("underflow p50 = %v", got)
	}
	if got := o.quantile(0.99); got != time.Minute {
		t.Errorf("overflow p99 = %v, want 1m", got)
	}
}

// withinRel reports whether got is within rel of want.
func withinRel(got, want time.Duration, rel float64) bool {
	return math.Abs(float64(got-want)) <= rel*float64(want)
}

func TestBenchMix(t *testing.T) {
	m, err := parseMix(20, 40, 40)
	if err != nil || m != (benchMix{Writes: 20, Reads: 40, StaleReads: 40}) {
		t.Fatalf("parseMix(20, 40, 40) = %+v, %v", m, err)
	}
	var counts [numBenchOps]int
	for r := range 100 {
		counts[m.pick(r)]++
	}
	if counts != [numBenchOps]int{20, 40, 40} {
		t.Errorf("picks over 0..99 = %v", counts)
	}
	if m, err := parseMix(0, 0, 100); err != nil || m.pick(0) != opStaleRead || m.pick(99) != opStaleRead {
		t.Errorf("stale only: %+v, %v", m, err)
	}
	if m, err := parseMix(100, 0, 0); err != nil || m.pick(99) != opWrite {
		t.Errorf("writes only: %+v, %v", m, err)
	}
	for _, bad := range [][3]int{{20, 40, 30}, {50, 50, 50}, {-10, 60, 50}, {110, -10, 0}, {0, 0, 0}} {
		if _, err := parseMix(bad[0], bad[1], bad[2]); err == nil {
			t.Errorf("parseMix(%v) accepted", bad)
		}
	}
}

func TestBenchUsageErrors(t *testing.T) {
	env := map[string]string{"KEYWARD_ADDR": "http://127.0.0.1:1"}
	for _, args := range [][]string{
		{"--writes", "50"},
		{"--writes", "10", "--reads", "10", "--stale-reads", "10"},
		{"--concurrency", "0"},
		{"--duration", "0s"},
		{"--duration", "ten"},
		{"--value-size", "0"},
		{"--value-size", "70000"},
		{"--keys", "0"},
		{"--populate", "-1"},
		{"--prefix", "/x/"},
		{"-o", "yaml"},
		{"--addr", "ftp://x"},
		{"--addr", " , "},
		{"extra"},
		{"--nope"},
	} {
		code, out, errOut := runCLI(env, "", append([]string{"bench"}, args...)...)
		if code != 2 || out != "" || !strings.HasPrefix(errOut, "error: ") || !strings.Contains(errOut, "Usage: keyward bench") {
			t.Errorf("bench %q: code %d out %q err %q", args, code, out, errOut)
		}
	}
	code, out, _ := runCLI(env, "", "bench", "--help")
	if code != 0 || !strings.Contains(out, "--stale-reads") {
		t.Errorf("--help: code %d out %q", code, out)
	}
}

// fakeStore is the data of a fake cluster, shared by its nodes.
type fakeStore struct {
	mu     sync.Mutex
	values map[string][]byte
	index  uint64
}

// paths returns the stored paths.
func (s *fakeStore) paths() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for p := range s.values {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// fakeAPI is one node of a fake cluster: just enough of the API for bench, PUT and GET of
// secrets, and /metrics.
type fakeAPI struct {
	store    *fakeStore
	metrics  bool // serve /metrics
	fail     bool // answer every API request with 500 internal
	flaky    bool // answer every other GET with 503 no_leader
	puts     atomic.Int64
	gets     atomic.Int64
	stale    atomic.Int64
	authOK   atomic.Int64
	badValue atomic.Int64
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/metrics" && f.metrics {
		_, _ = w.Write([]byte("# HELP process_resident_memory_bytes Resident memory size in bytes.\n" +
			"# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 3.3554432e+07\n"))
		return
	}
	path, ok := strings.CutPrefix(r.URL.Path, "/v1/secrets/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.Header.Get("Authorization") == "Bearer benchtok" {
		f.authOK.Add(1)
	}
	w.Header().Set("Content-Type", "application/json")
	if f.fail {
		reply(500, wire.ErrorResponse{Error: wire.Error{Code: "internal", Message: "broken"}})(w, r)
		return
	}
	switch r.Method {
	case http.MethodPut:
		f.puts.Add(1)
		var req wire.PutRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Value == nil || req.CAS != nil {
			f.badValue.Add(1)
			reply(400, wire.ErrorResponse{Error: wire.Error{Code: "invalid_value", Message: "bad"}})(w, r)
			return
		}
		f.store.mu.Lock()
		f.store.index++
		f.store.values[path] = []byte(*req.Value)
		f.store.mu.Unlock()
		reply(200, wire.WriteResponse{Path: path, Version: 1, State: "CURRENT"})(w, r)
	case http.MethodGet:
		if n := f.gets.Add(1); f.flaky && n%2 == 0 {
			reply(503, wire.ErrorResponse{Error: wire.Error{Code: "no_leader", Message: "no leader"}})(w, r)
			return
		}
		consistency := "linearizable"
		if r.URL.Query().Get("stale") == "true" {
			f.stale.Add(1)
			consistency = "stale"
		}
		f.store.mu.Lock()
		v, ok := f.store.values[path]
		idx := f.store.index
		f.store.mu.Unlock()
		if !ok {
			reply(404, wire.ErrorResponse{Error: wire.Error{Code: "not_found", Message: "no such secret"}})(w, r)
			return
		}
		s := string(v)
		w.Header().Set(wire.HeaderIndex, strconv.FormatUint(idx, 10))
		w.Header().Set("X-Keyward-Consistency", consistency)
		reply(200, wire.SecretResponse{Path: path, Version: 1, State: "CURRENT", Value: &s})(w, r)
	default:
		reply(405, wire.ErrorResponse{Error: wire.Error{Code: "method_not_allowed", Message: "no"}})(w, r)
	}
}

// benchCluster starts a fake two-node cluster: a plain-HTTP node serving /metrics and a TLS
// one that does not. It returns their addresses, the path of a PEM file with the TLS node's
// certificate, the nodes and their shared store.
func benchCluster(t *testing.T) (addrs, caFile string, nodes []*fakeAPI, store *fakeStore) {
	t.Helper()
	store = &fakeStore{values: map[string][]byte{}}
	plain := &fakeAPI{store: store, metrics: true}
	secure := &fakeAPI{store: store}
	s1 := httptest.NewServer(plain)
	s2 := httptest.NewTLSServer(secure)
	t.Cleanup(s1.Close)
	t.Cleanup(s2.Close)
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s2.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return s1.URL + "," + s2.URL, caFile, []*fakeAPI{plain, secure}, store
}

func TestBenchRunJSON(t *testing.T) {
	addrs, ca, nodes, store := benchCluster(t)
	env := map[string]string{"KEYWARD_ADDR": addrs, "KEYWARD_CACERT": ca, "KEYWARD_TOKEN": "benchtok"}
	code, out, errOut := runCLI(env, "", "bench", "--duration", "1s", "--warmup", "100ms",
		"--concurrency", "4", "--keys", "20", "--value-size", "100", "-o", "json")
	if code != 0 {
		t.Fatalf("code %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	var rep benchReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if len(rep.Ops) != 3 || rep.Total.Count == 0 || rep.Total.Errors != 0 || rep.Total.OpsPerSec <= 0 ||
		rep.ElapsedS < 1 || len(rep.Nodes) != 2 || rep.Mix != (benchMix{20, 40, 40}) {
		t.Fatalf("report = %+v", rep)
	}
	var sum uint64
	for i, o := range rep.Ops {
		if o.Op != benchOp(i).String() || o.Count == 0 || o.P50MS <= 0 || o.P50MS > o.P99MS || o.P99MS > o.MaxMS {
			t.Errorf("op %d = %+v", i, o)
		}
		sum += o.Count
	}
	if sum != rep.Total.Count {
		t.Errorf("ops sum to %d, total %d", sum, rep.Total.Count)
	}
	for i, n := range nodes {
		if n.puts.Load() == 0 || n.gets.Load() == 0 || n.stale.Load() == 0 || n.badValue.Load() != 0 ||
			n.authOK.Load() != n.puts.Load()+n.gets.Load() {
			t.Errorf("node %d: %d puts, %d gets, %d stale, %d bad values, %d with the token", i,
				n.puts.Load(), n.gets.Load(), n.stale.Load(), n.badValue.Load(), n.authOK.Load())
		}
	}
	if paths := store.paths(); len(paths) != 20 || paths[0] != "bench/0" || paths[19] != "bench/9" {
		t.Errorf("stored paths = %q", paths)
	}
}

func TestBenchRunTextWithErrors(t *testing.T) {
	addrs, ca, nodes, store := benchCluster(t)
	nodes[1].flaky = true
	code, out, errOut := runCLI(map[string]string{"KEYWARD_CACERT": ca}, "", "bench", "--addr", addrs,
		"--duration", "300ms", "--warmup", "0s", "--concurrency", "2", "--keys", "1", "--writes", "0",
		"--reads", "100", "--stale-reads", "0", "--prefix", "t/")
	if code != 0 {
		t.Fatalf("code %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	for _, want := range []string{"OP", "read", "total", "100% reads", "ERRORS", "no_leader", "e.g. no_leader: no leader (HTTP 503)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "stale_read") || strings.Contains(out, "write ") {
		t.Errorf("ops outside the mix reported:\n%s", out)
	}
	if paths := store.paths(); !slices.Equal(paths, []string{"t/0"}) {
		t.Errorf("stored paths = %q", paths)
	}
}

func TestBenchNothingSucceeds(t *testing.T) {
	f := &fakeAPI{store: &fakeStore{values: map[string][]byte{}}, fail: true}
	srv := httptest.NewServer(f)
	defer srv.Close()
	code, _, errOut := runCLI(nil, "", "bench", "--addr", srv.URL, "--duration", "100ms", "--keys", "3", "--concurrency", "2")
	if code != 1 || !strings.Contains(errOut, "setup failed") || !strings.Contains(errOut, "internal") {
		t.Errorf("failing server: code %d err %q", code, errOut)
	}
	code, _, errOut = runCLI(nil, "", "bench", "--addr", srv.URL, "--populate", "5", "--concurrency", "2")
	if code != 1 || !strings.Contains(errOut, "no write succeeded") {
		t.Errorf("failing populate: code %d err %q", code, errOut)
	}
	code, _, errOut = runCLI(nil, "", "bench", "--addr", srv.URL, "--ca-cert", filepath.Join(t.TempDir(), "missing.pem"))
	if code != 1 || !strings.Contains(errOut, "CA certificate") {
		t.Errorf("missing CA: code %d err %q", code, errOut)
	}
}

func TestBenchPopulate(t *testing.T) {
	addrs, ca, _, store := benchCluster(t)
	env := map[string]string{"KEYWARD_ADDR": addrs, "KEYWARD_CACERT": ca}
	code, out, errOut := runCLI(env, "", "bench", "--populate", "50", "--value-size", "200", "--concurrency", "4", "-o", "json")
	if code != 0 {
		t.Fatalf("code %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	var rep benchPopulateReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	wantStored := uint64(50 * (200 + 29))
	if rep.Write.Count != 50 || rep.Write.OpsPerSec <= 0 || rep.StoredCiphertextBytes != wantStored ||
		rep.RSSBudgetBytes != 2*wantStored+64<<20 || len(rep.RSS) != 2 {
		t.Fatalf("report = %+v", rep)
	}
	if r := rep.RSS[0]; r.RSSBytes != 32<<20 || r.WithinBudget == nil || !*r.WithinBudget || r.Error != "" {
		t.Errorf("node with metrics: %+v", r)
	}
	if r := rep.RSS[1]; r.RSSBytes != 0 || r.WithinBudget != nil || !strings.Contains(r.Error, "metrics unavailable") {
		t.Errorf("node without metrics: %+v", r)
	}
	if paths := store.paths(); len(paths) != 50 || !slices.Contains(paths, "bench/pop/0") || !slices.Contains(paths, "bench/pop/49") {
		t.Errorf("populated paths = %q", paths)
	}

	code, out, errOut = runCLI(env, "", "bench", "--populate", "10", "--value-size", "16", "--concurrency", "2", "--prefix", "p/")
	if code != 0 {
		t.Fatalf("text: code %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	for _, want := range []string{"10 of 10 secrets", "p/pop/", "32.0 MiB", "yes", "metrics unavailable", "http_404"} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
	}
}

func TestBenchParseMetric(t *testing.T) {
	text := []byte("# HELP process_resident_memory_bytes x\n# TYPE process_resident_memory_bytes gauge\n" +
		"process_resident_memory_bytes_total 5\nprocess_resident_memory_bytes{node=\"a b}\"} 1.5e+06 1700000000000\n")
	if v, err := parseBenchMetric(text, benchRSSMetric); err != nil || v != 1.5e6 {
		t.Errorf("parseMetric = %v, %v", v, err)
	}
	if _, err := parseBenchMetric([]byte("go_goroutines 7\n"), benchRSSMetric); !errors.Is(err, errBenchNoMetric) {
		t.Errorf("missing metric: err = %v", err)
	}
	if _, err := parseBenchMetric([]byte("process_resident_memory_bytes NaN\n"), benchRSSMetric); err == nil {
		t.Error("NaN accepted")
	}
}

func TestBenchFsync(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := runCLI(nil, "", "bench", "fsync", "--dir", dir, "--records", "20")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{"20 records", "(20 syncs)", "wall time per record: median ", "CPU time of this process per record: "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Errorf("the temporary log was left behind: %v %v", ents, err)
	}

	for _, args := range [][]string{{"--records", "0"}, {"--dir"}, {"extra"}} {
		code, _, errOut := runCLI(nil, "", append([]string{"bench", "fsync"}, args...)...)
		if code != 2 || !strings.Contains(errOut, "Usage: keyward bench fsync") {
			t.Errorf("bench fsync %v: exit %d, stderr %q; want 2 with the usage", args, code, errOut)
		}
	}
	if code, _, errOut := runCLI(nil, "", "bench", "fsync", "--dir", filepath.Join(dir, "missing")); code != 1 || !strings.Contains(errOut, "error:") {
		t.Errorf("missing dir: exit %d, stderr %q; want 1 with an error", code, errOut)
	}
}
