package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/api"
	"github.com/keyward/keyward/api/client"
	"github.com/keyward/keyward/cluster"
	"github.com/keyward/keyward/store"
)

// The sys methods are tested against the real api.Server (its routes, strict JSON decoding and
// error table) over a fake cluster and secret service, so a drift between the client's types
// and cluster's JSON, or between the client's requests and the handlers, fails here.

// fakeCluster records what the API asked of the cluster.
type fakeCluster struct {
	mu      sync.Mutex
	calls   []string
	members []cluster.Member
	peers   []cluster.Peer
	status  cluster.ClusterStatus
	err     error // returned by every call that can fail
}

func (f *fakeCluster) record(s string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
	return f.err
}

func (f *fakeCluster) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeCluster) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeCluster) Snapshot() error { return f.record("snapshot") }
func (f *fakeCluster) Members() []cluster.Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.members
}
func (f *fakeCluster) Peers(context.Context) ([]cluster.Peer, error) {
	return f.peers, f.record("peers")
}
func (f *fakeCluster) ClusterStatus(context.Context) (cluster.ClusterStatus, error) {
	return f.status, f.record("status")
}
func (f *fakeCluster) JoinCluster(_ context.Context, addr string) error {
	return f.record("join " + addr)
}
func (f *fakeCluster) Remove(_ context.Context, id string) error { return f.record("remove " + id) }
func (f *fakeCluster) TransferLeader(_ context.Context, id string) error {
	return f.record("transfer " + id)
}

func (f *fakeCluster) IsLeader() bool    { return true }
func (f *fakeCluster) LeaderAPI() string { return "" }

// fakeSecrets streams snap on Snapshot and keeps what Restore read. Its other methods are
// never called here (the nil embedded interface would panic).
type fakeSecrets struct {
	api.Secrets
	snap []byte

	mu       sync.Mutex
	restored []byte
	err      error
}

func (f *fakeSecrets) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeSecrets) lastRestored() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.restored
}

func (f *fakeSecrets) Snapshot(_ context.Context, w io.Writer) error {
	f.mu.Lock()
	err := f.err
	f.mu.Unlock()
	if err != nil {
		return err
	}
	_, err = w.Write(f.snap)
	return err
}

func (f *fakeSecrets) Restore(_ context.Context, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.restored = b
	return nil
}

func apiServer(t *testing.T, c *fakeCluster, s *fakeSecrets) *client.Client {
	t.Helper()
	srv := httptest.NewServer(api.New(api.Deps{Secrets: s, Cluster: c}))
	t.Cleanup(srv.Close)
	cl, err := client.New(srv.URL, client.WithToken("t0k"))
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// randomBytes returns n deterministic pseudo-random bytes.
func randomBytes(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestSysReadsAgainstAPIServer(t *testing.T) {
	since := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	fc := &fakeCluster{
		members: []cluster.Member{{ID: "n1", GossipAddr: "10.0.0.1:8202", Status: "alive", Since: since,
			Meta: cluster.MemberMeta{RaftAddr: "10.0.0.1:8201", HTTPAddr: "https://10.0.0.1:8200", Role: "voter", Expect: 3}},
			{ID: "r1", GossipAddr: "10.0.0.9:8202", Status: "dead", Meta: cluster.MemberMeta{RaftAddr: "10.0.0.9:8201", Role: "replica"}}},
		peers: []cluster.Peer{
			{ID: "n1", Address: "10.0.0.1:8201", Voter: true, Leader: true, Reachable: true, State: "Leader", AppliedIndex: 42, Term: 7},
			{ID: "n2", Address: "10.0.0.2:8201", Voter: true, Reachable: true, State: "Follower", LastContact: 1500 * time.Microsecond, AppliedIndex: 41, Term: 7},
			{ID: "n3", Address: "10.0.0.3:8201", Voter: false, Reachable: true, State: "Follower", LastContact: -1, Term: 7},
			{ID: "n4", Address: "10.0.0.4:8201", Voter: true},
		},
		status: cluster.ClusterStatus{Healthy: true, Leader: "n1", Voters: 3, HealthyVoters: 2, Replicas: 1, Quorum: 2, FailureTolerance: 0},
	}
	c := apiServer(t, fc, &fakeSecrets{})
	ctx := context.Background()

	members, err := c.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantMembers := []client.Member{
		{ID: "n1", GossipAddr: "10.0.0.1:8202", Status: "alive", Since: since,
			Meta: client.MemberMeta{RaftAddr: "10.0.0.1:8201", HTTPAddr: "https://10.0.0.1:8200", Role: "voter", Expect: 3}},
		{ID: "r1", GossipAddr: "10.0.0.9:8202", Status: "dead", Meta: client.MemberMeta{RaftAddr: "10.0.0.9:8201", Role: "replica"}},
	}
	if !reflect.DeepEqual(members, wantMembers) {
		t.Errorf("Members = %+v\nwant %+v", members, wantMembers)
	}

	peers, err := c.Peers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(peers) != len(fc.peers) {
		t.Fatalf("Peers = %+v", peers)
	}
	for i, p := range fc.peers {
		want := client.Peer{ID: p.ID, Address: p.Address, Voter: p.Voter, Leader: p.Leader, Reachable: p.Reachable,
			State: p.State, LastContact: p.LastContact, AppliedIndex: p.AppliedIndex, Term: p.Term}
		if peers[i] != want {
			t.Errorf("peer %d = %+v, want %+v", i, peers[i], want)
		}
	}
	if peers[1].LastContact != 1500*time.Microsecond {
		t.Errorf("last contact = %v, want 1.5ms", peers[1].LastContact)
	}

	st, err := c.ClusterStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := (client.ClusterStatus{Healthy: true, Leader: "n1", Voters: 3, HealthyVoters: 2, Replicas: 1, Quorum: 2}); *st != want {
		t.Errorf("ClusterStatus = %+v, want %+v", *st, want)
	}

	// A node without gossip answers {"members": null}.
	fc.mu.Lock()
	fc.members = nil
	fc.mu.Unlock()
	if members, err := c.Members(ctx); err != nil || len(members) != 0 {
		t.Errorf("Members without gossip = %v, %v", members, err)
	}
}

// TestSysTypesMirrorCluster checks that the client's types carry exactly the JSON names of
// cluster's, with the same kinds.
func TestSysTypesMirrorCluster(t *testing.T) {
	for _, pair := range [][2]any{
		{cluster.Member{}, client.Member{}},
		{cluster.MemberMeta{}, client.MemberMeta{}},
		{cluster.Peer{}, client.Peer{}},
		{cluster.ClusterStatus{}, client.ClusterStatus{}},
	} {
		want, got := jsonFields(reflect.TypeOf(pair[0])), jsonFields(reflect.TypeOf(pair[1]))
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%T fields %v, want those of %T: %v", pair[1], got, pair[0], want)
		}
	}
}

func jsonFields(t reflect.Type) map[string]string {
	out := map[string]string{}
	for i := range t.NumField() {
		f := t.Field(i)
		kind := f.Type.Kind().String()
		if f.Type.Kind() == reflect.Struct {
			kind = f.Type.Name()
		}
		out[f.Tag.Get("json")] = kind
	}
	return out
}

func TestSysWritesAgainstAPIServer(t *testing.T) {
	fc := &fakeCluster{}
	c := apiServer(t, fc, &fakeSecrets{})
	ctx := context.Background()
	for _, step := range []func() error{
		func() error { return c.JoinCluster(ctx, "10.0.0.1:8201") },
		func() error { return c.RemovePeer(ctx, "n3") },
		func() error { return c.TransferLeader(ctx, "") },
		func() error { return c.TransferLeader(ctx, "n2") },
		func() error { return c.ForceRaftSnapshot(ctx) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"join 10.0.0.1:8201", "remove n3", "transfer ", "transfer n2", "snapshot"}
	if got := fc.seen(); !reflect.DeepEqual(got, want) {
		t.Errorf("cluster saw %q, want %q", got, want)
	}

	// The server's own checks and error table come back as *APIError.
	if err := c.RemovePeer(ctx, ""); !client.IsCode(err, "invalid_argument") {
		t.Errorf("RemovePeer(\"\") = %v, want invalid_argument", err)
	}
	if err := c.JoinCluster(ctx, ""); !client.IsCode(err, "invalid_argument") {
		t.Errorf("JoinCluster(\"\") = %v, want invalid_argument", err)
	}
	fc.setErr(fmt.Errorf("%w: n9", cluster.ErrNotFound))
	err := c.TransferLeader(ctx, "n9")
	if ae, ok := errors.AsType[*client.APIError](err); !ok || ae.Status != 404 || ae.Code != "not_found" {
		t.Errorf("TransferLeader(n9) = %v, want a 404 not_found", err)
	}
	fc.setErr(cluster.ErrNotLeader)
	for name, f := range map[string]func() error{
		"peers":  func() error { _, err := c.Peers(ctx); return err },
		"status": func() error { _, err := c.ClusterStatus(ctx); return err },
		"force":  func() error { return c.ForceRaftSnapshot(ctx) },
	} {
		if err := f(); !client.IsCode(err, "no_leader") {
			t.Errorf("%s = %v, want no_leader", name, err)
		}
	}
}

// TestSysRequestEncoding checks the exact requests: methods, paths, bodies and headers.
func TestSysRequestEncoding(t *testing.T) {
	type req struct{ method, path, contentType, auth, body string }
	var mu sync.Mutex
	var got []req
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, req{r.Method, r.URL.Path, r.Header.Get("Content-Type"), r.Header.Get("Authorization"), string(b)})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{}`)
	}))
	t.Cleanup(srv.Close)
	c, err := client.New(srv.URL+"/prefix/", client.WithToken("t0k"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_ = c.JoinCluster(ctx, "h:1")
	_ = c.RemovePeer(ctx, "n3")
	_ = c.TransferLeader(ctx, "")
	_ = c.TransferLeader(ctx, "n2")
	_ = c.ForceRaftSnapshot(ctx)
	_ = c.SnapshotRestore(ctx, bytes.NewReader([]byte("snap")))
	const js = "application/json"
	want := []req{
		{"POST", "/prefix/v1/sys/cluster/join", js, "Bearer t0k", `{"address":"h:1"}`},
		{"POST", "/prefix/v1/sys/cluster/remove", js, "Bearer t0k", `{"node_id":"n3"}`},
		{"POST", "/prefix/v1/sys/cluster/transfer-leader", "", "Bearer t0k", ``},
		{"POST", "/prefix/v1/sys/cluster/transfer-leader", js, "Bearer t0k", `{"node_id":"n2"}`},
		{"POST", "/prefix/v1/sys/raft/snapshot", "", "Bearer t0k", ``},
		{"PUT", "/prefix/v1/sys/snapshot", "application/octet-stream", "Bearer t0k", `snap`},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("requests\n%+v\nwant\n%+v", got, want)
	}
}

func TestSnapshotStreamsPastResponseCap(t *testing.T) {
	snap := randomBytes(3 << 20) // over the client's 2 MiB cap on JSON answers
	fs := &fakeSecrets{snap: snap}
	c := apiServer(t, &fakeCluster{}, fs)
	ctx := context.Background()

	var buf bytes.Buffer
	if err := c.SnapshotSave(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), snap) {
		t.Fatalf("saved %d bytes, want the %d sent", buf.Len(), len(snap))
	}
	if err := c.SnapshotRestore(ctx, bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	if got := fs.lastRestored(); !bytes.Equal(got, snap) {
		t.Fatalf("restored %d bytes, want %d", len(got), len(snap))
	}
	rc := &closeRecorder{Reader: bytes.NewReader(snap)}
	if err := c.SnapshotRestore(ctx, rc); err != nil || rc.closed {
		t.Errorf("restore from a ReadCloser: %v, closed %v; want it left open", err, rc.closed)
	}

	fs.setErr(fmt.Errorf("%w: checksum mismatch", store.ErrBadSnapshot))
	if err := c.SnapshotRestore(ctx, bytes.NewReader(snap)); !client.IsCode(err, "invalid_snapshot") {
		t.Errorf("restore of a bad snapshot = %v, want invalid_snapshot", err)
	}
	fs.setErr(store.ErrNoLeader)
	buf.Reset()
	if err := c.SnapshotSave(ctx, &buf); !client.IsCode(err, "no_leader") || buf.Len() != 0 {
		t.Errorf("save without a leader = %v (%d bytes written), want no_leader and nothing", err, buf.Len())
	}
}

func TestSnapshotSaveFailures(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusNoContent)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(int(status.Load()))
		_, _ = w.Write([]byte("some bytes"))
	}))
	t.Cleanup(srv.Close)
	c, err := client.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var buf bytes.Buffer
	if err := c.SnapshotSave(ctx, &buf); !errors.Is(err, client.ErrMalformedResponse) || buf.Len() != 0 {
		t.Errorf("204 answer: %v, %d bytes written; want ErrMalformedResponse and nothing", err, buf.Len())
	}
	status.Store(http.StatusBadGateway)
	err = c.SnapshotSave(ctx, &buf)
	if ae, ok := errors.AsType[*client.APIError](err); !ok || ae.Status != 502 || buf.Len() != 0 {
		t.Errorf("502 answer: %v, %d bytes written", err, buf.Len())
	}
	status.Store(http.StatusOK)
	if err := c.SnapshotSave(ctx, failingWriter{}); err == nil {
		t.Error("a failing writer went unreported")
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// TestSnapshotNotBoundByRequestTimeout: a snapshot may take longer than the client's request
// timeout; only ctx bounds it.
func TestSnapshotNotBoundByRequestTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("first"))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write([]byte("-second"))
	}))
	t.Cleanup(srv.Close)
	c, err := client.New(srv.URL, client.WithHTTPClient(&http.Client{Timeout: 50 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	w := writerFunc(func(p []byte) (int, error) {
		// Hold the stream open well past the request timeout before letting it finish.
		once.Do(func() { time.AfterFunc(300*time.Millisecond, func() { close(release) }) })
		return len(p), nil
	})
	var got bytes.Buffer
	if err := c.SnapshotSave(context.Background(), io.MultiWriter(w, &got)); err != nil {
		t.Fatalf("save outlasting the request timeout: %v", err)
	}
	if got.String() != "first-second" {
		t.Errorf("saved %q", got.String())
	}

	// ctx still bounds it.
	release2 := make(chan struct{})
	defer close(release2)
	srv2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("first"))
		w.(http.Flusher).Flush()
		select {
		case <-release2:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv2.Close)
	c2, err := client.New(srv2.URL)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var once2 sync.Once
	w2 := writerFunc(func(p []byte) (int, error) { once2.Do(cancel); return len(p), nil })
	if err := c2.SnapshotSave(ctx, w2); !errors.Is(err, context.Canceled) {
		t.Errorf("save after cancel = %v, want context.Canceled", err)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

type closeRecorder struct {
	io.Reader
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }
