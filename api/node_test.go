package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/api"
	"github.com/keyward/keyward/api/wire"
	"github.com/keyward/keyward/cluster"
	"github.com/keyward/keyward/fsm"
	"github.com/keyward/keyward/kms"
	"github.com/keyward/keyward/store"
)

// newTestNode starts a real single-node keyward in-process, wired like cmd/keyward/server.go:
// fsm.New, cluster.Open (real Raft over a loopback TCP transport, Bolt stores in a temp dir,
// bootstrapped), the local KEK provider behind an Envelope, store.New and api.New, served over
// real TCP by httptest. It returns once /v1/sys/health answers 200. Everything is closed by
// t.Cleanup; the node's log is printed only if the test failed.
func newTestNode(t testing.TB) (baseURL string, c *apiClient) {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))

	provider, err := kms.NewLocal(filepath.Join(t.TempDir(), "kek", "kek.key"))
	if err != nil {
		t.Fatalf("kms.NewLocal: %v", err)
	}
	envelope := kms.NewEnvelope(provider, kms.CacheOptions{})

	machine := fsm.New(log.With("component", "fsm"))
	// Port 0 on loopback: the kernel picks a free port when the Raft transport binds, so
	// there is no window in which another process (tests of other packages run in parallel)
	// can take it. The bootstrap configuration uses the transport's actual address.
	node, err := cluster.Open(cluster.Config{
		NodeID: "node1", DataDir: filepath.Join(t.TempDir(), "data"), RaftAddr: "127.0.0.1:0",
		Bootstrap: true, FSM: machine, Noop: fsm.MustEncode(fsm.CmdNoop, fsm.Noop{}), Codec: fsm.Codec{}, Log: log,
	})
	if err != nil {
		t.Fatalf("cluster.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := node.Close(); err != nil {
			t.Errorf("node.Close: %v", err)
		}
		if t.Failed() {
			t.Logf("node log:\n%s", logs.String())
		}
	})

	svc := store.New(store.Deps{Proposer: node, State: machine, Reads: node, Restorer: node, Sealer: envelope, Log: log})
	ictx, icancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer icancel()
	if _, err := svc.Init(ictx, "admin", "", ""); err != nil {
		t.Fatalf("init: %v", err)
	}
	handler := api.New(api.Deps{Secrets: svc, Health: healthSource{node: node, fsm: machine}, Cluster: node, Log: log})

	srv := httptest.NewUnstartedServer(handler)
	srv.Config.ReadHeaderTimeout = 10 * time.Second
	srv.Config.ReadTimeout = 30 * time.Second
	srv.Config.WriteTimeout = 60 * time.Second
	srv.Start()
	t.Cleanup(srv.Close) // runs before node.Close: in-flight requests finish first

	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: 30 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	c = &apiClient{host: u.Host, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}

	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := c.send(http.MethodGet, "/v1/sys/health", "", nil)
		if err == nil && r.status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node not healthy within 20s: last status %d, err %v", r.status, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return srv.URL, c
}

// healthSource is the health source of cmd/keyward/server.go (healthSource lives in package
// main, so it is restated here).
type healthSource struct {
	node *cluster.Node
	fsm  *fsm.FSM
}

func (h healthSource) Health() wire.HealthResponse {
	st := h.node.Status()
	return wire.HealthResponse{
		NodeID: st.NodeID, State: st.State, Leader: st.LeaderID,
		AppliedIndex: h.fsm.AppliedIndex(), CommitIndex: st.CommitIndex,
		LastContactMS: st.LastContact.Milliseconds(),
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// apiClient sends raw HTTP requests to a test node: paths go on the wire exactly as given
// (URL.Opaque), so Go never cleans or re-escapes them.
type apiClient struct {
	host string
	hc   *http.Client
}

type apiResp struct {
	status int
	header http.Header
	body   []byte
}

func (r apiResp) String() string {
	b := r.body
	if len(b) > 300 {
		b = append(b[:300:300], "..."...)
	}
	return fmt.Sprintf("%d %s", r.status, b)
}

// index is the X-Keyward-Index header; ok is false when it is missing or not a number.
func (r apiResp) index() (uint64, bool) {
	v := r.header.Get(wire.HeaderIndex)
	n, err := strconv.ParseUint(v, 10, 64)
	return n, err == nil && v != ""
}

// send is safe to call from any goroutine. rawPath is sent as is; a nil body sends none.
func (c *apiClient) send(method, rawPath, rawQuery string, body []byte) (apiResp, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.host+"/", rd)
	if err != nil {
		return apiResp{}, err
	}
	req.URL.Opaque = rawPath
	req.URL.RawQuery = rawQuery
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return apiResp{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return apiResp{}, err
	}
	return apiResp{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

func (c *apiClient) do(t testing.TB, method, rawPath, rawQuery string, body []byte) apiResp {
	t.Helper()
	r, err := c.send(method, rawPath, rawQuery, body)
	if err != nil {
		t.Fatalf("%s %s?%s: %v", method, rawPath, rawQuery, err)
	}
	return r
}

// ok sends a request that must answer 200 with JSON, and decodes the body strictly into out.
func (c *apiClient) ok(t testing.TB, method, rawPath, rawQuery string, body []byte, out any) apiResp {
	t.Helper()
	r := c.do(t, method, rawPath, rawQuery, body)
	if r.status != http.StatusOK {
		t.Fatalf("%s %s?%s: want 200, got %s", method, rawPath, rawQuery, r)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: Content-Type %q", method, rawPath, ct)
	}
	if out != nil {
		if err := strictDecode(r.body, out); err != nil {
			t.Fatalf("%s %s: response %s: %v", method, rawPath, r.body, err)
		}
	}
	return r
}

func (c *apiClient) put(t testing.TB, path string, req wire.PutRequest) wire.WriteResponse {
	t.Helper()
	var out wire.WriteResponse
	c.ok(t, http.MethodPut, "/v1/secrets/"+path, "", mustJSON(t, req), &out)
	return out
}

func (c *apiClient) putValue(t testing.TB, path, value string) wire.WriteResponse {
	t.Helper()
	return c.put(t, path, wire.PutRequest{Value: &value})
}

func (c *apiClient) get(t testing.TB, path, query string) (wire.SecretResponse, apiResp) {
	t.Helper()
	var out wire.SecretResponse
	r := c.ok(t, http.MethodGet, "/v1/secrets/"+path, query, nil, &out)
	return out, r
}

func (c *apiClient) versions(t testing.TB, path string) wire.VersionsResponse {
	t.Helper()
	var out wire.VersionsResponse
	c.ok(t, http.MethodGet, "/v1/versions/"+path, "", nil, &out)
	return out
}

func (c *apiClient) list(t testing.TB, query string) wire.ListResponse {
	t.Helper()
	var out wire.ListResponse
	c.ok(t, http.MethodGet, "/v1/secrets", query, nil, &out)
	return out
}

// strictDecode decodes exactly one JSON value with no fields outside out's type.
func strictDecode(b []byte, out any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("more than one JSON value")
	}
	return nil
}

// checkError asserts r is a documented error answer: the status, Content-Type JSON, and a body
// of exactly {"error": {"code", "message"[, "current_version"]}} with the code. current_version
// is present exactly for cas_mismatch.
func checkError(t testing.TB, r apiResp, status int, code string) wire.Error {
	t.Helper()
	if r.status != status {
		t.Errorf("status %d, want %d (body %s)", r.status, status, r.body)
		if r.status < 400 {
			return wire.Error{}
		}
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var raw map[string]map[string]json.RawMessage
	if err := json.Unmarshal(r.body, &raw); err != nil {
		t.Errorf("error body is not {\"error\": {...}}: %v: %s", err, r.body)
		return wire.Error{}
	}
	if len(raw) != 1 || raw["error"] == nil {
		t.Errorf("error body has top-level keys other than \"error\": %s", r.body)
	}
	for k := range raw["error"] {
		if k != "code" && k != "message" && k != "current_version" {
			t.Errorf("error object has undocumented key %q: %s", k, r.body)
		}
	}
	var e wire.ErrorResponse
	if err := strictDecode(r.body, &e); err != nil {
		t.Errorf("error body %s: %v", r.body, err)
	}
	if e.Error.Code != code {
		t.Errorf("error.code %q, want %q (body %s)", e.Error.Code, code, r.body)
	}
	if e.Error.Message == "" {
		t.Errorf("error.message is empty: %s", r.body)
	}
	if (e.Error.CurrentVersion != nil) != (code == "cas_mismatch") {
		t.Errorf("current_version present=%v for code %q: %s", e.Error.CurrentVersion != nil, code, r.body)
	}
	return e.Error
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ptr[T any](v T) *T { return &v }

// valueBody builds {"value":"<s>"} for a plain ASCII s.
func valueBody(s string) []byte { return []byte(`{"value":"` + s + `"}`) }
