package client

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// TestFailover: a client over several nodes moves past a node it cannot reach, past a node
// that refuses for lack of a leader, and (for reads only) past a failing node; it does not
// repeat a write that may have had an effect.
func TestFailover(t *testing.T) {
	closed := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		return "http://" + addr
	}
	var hits atomic.Int32
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodGet {
			_, _ = w.Write([]byte(`{"path":"a","version":1,"state":"CURRENT","value":"v"}`))
			return
		}
		_, _ = w.Write([]byte(`{"path":"a","version":2,"state":"CURRENT"}`))
	}))
	defer good.Close()
	failing := func(code string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":{"code":"` + code + `","message":"x"}}`))
		}))
	}
	noLeader, unknown := failing("no_leader"), failing("outcome_unknown")
	defer noLeader.Close()
	defer unknown.Close()
	ctx := context.Background()

	c, err := New(closed() + "," + good.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "a", []byte("v"), PutOptions{}); err != nil {
		t.Fatalf("write past an unreachable node: %v", err)
	}
	if got := c.pref.Load(); got != 1 {
		t.Fatalf("preferred node %d, want the one that answered (1)", got)
	}
	c, _ = New(noLeader.URL + "," + good.URL)
	if _, err := c.Put(ctx, "a", []byte("v"), PutOptions{}); err != nil {
		t.Fatalf("write past a node without a leader: %v", err)
	}
	c, _ = New(unknown.URL + "," + good.URL)
	before := hits.Load()
	if _, err := c.Put(ctx, "a", []byte("v"), PutOptions{}); !IsCode(err, "outcome_unknown") || hits.Load() != before {
		t.Fatalf("a write with an unknown outcome was repeated elsewhere: %v", err)
	}
	if s, err := c.Get(ctx, "a", Selector{}); err != nil || string(s.Value) != "v" {
		t.Fatalf("read past a failing node: %v %v", s, err)
	}
}
