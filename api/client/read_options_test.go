package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/api/wire"
)

func TestGetWithReadOptionsQuery(t *testing.T) {
	v := "x"
	c, reqs := fake(t, jsonAnswer(200, wire.SecretResponse{Path: "a", Value: &v}))
	ctx := context.Background()
	for _, tc := range []struct {
		sel   Selector
		ro    ReadOptions
		query string
	}{
		{ro: ReadOptions{}, query: ""},
		{ro: ReadOptions{Stale: true}, query: "stale=true"},
		{ro: ReadOptions{MaxStale: 1500 * time.Millisecond}, query: "max_stale=1.5s"},
		{ro: ReadOptions{Stale: true, MaxStale: 2 * time.Second}, query: "max_stale=2s"},
		{ro: ReadOptions{MaxStale: -time.Second}, query: ""},
		{ro: ReadOptions{MinIndex: 42}, query: "min_index=42"},
		{sel: Selector{Version: 3}, ro: ReadOptions{Stale: true, MinIndex: 7}, query: "min_index=7&stale=true&version=3"},
		{sel: Selector{State: "PREVIOUS"}, ro: ReadOptions{MaxStale: time.Minute}, query: "max_stale=1m0s&state=PREVIOUS"},
	} {
		*reqs = nil
		if _, err := c.GetWith(ctx, "a", tc.sel, tc.ro); err != nil {
			t.Fatalf("GetWith(%+v, %+v): %v", tc.sel, tc.ro, err)
		}
		if got := (*reqs)[0].query; got != tc.query {
			t.Errorf("GetWith(%+v, %+v) query = %q, want %q", tc.sel, tc.ro, got, tc.query)
		}
	}
	if _, err := c.GetWith(ctx, "a", Selector{Version: 1, State: "CURRENT"}, ReadOptions{Stale: true}); !errors.Is(err, ErrAmbiguousSelector) {
		t.Errorf("both selectors: err = %v", err)
	}
}

func TestGetWithReadHeaders(t *testing.T) {
	v := "x"
	headers := map[string]string{}
	c, _ := fake(t, func(w http.ResponseWriter, r *http.Request) {
		for k, v := range headers {
			w.Header().Set(k, v)
		}
		jsonAnswer(200, wire.SecretResponse{Path: "a", Value: &v})(w, r)
	})
	ctx := context.Background()

	headers = map[string]string{wire.HeaderIndex: "17", "X-Keyward-Last-Contact": "250",
		"X-Keyward-Known-Leader": "true", "X-Keyward-Consistency": "stale"}
	s, err := c.GetWith(ctx, "a", Selector{}, ReadOptions{Stale: true})
	if err != nil {
		t.Fatal(err)
	}
	if s.Index != 17 || s.LastContact != 250*time.Millisecond || !s.KnownLeader || s.Consistency != "stale" {
		t.Errorf("stale read = index %d last contact %v known leader %v consistency %q", s.Index, s.LastContact, s.KnownLeader, s.Consistency)
	}

	headers = map[string]string{wire.HeaderIndex: "18", "X-Keyward-Last-Contact": "0",
		"X-Keyward-Known-Leader": "true", "X-Keyward-Consistency": "linearizable"}
	if s, err = c.Get(ctx, "a", Selector{}); err != nil {
		t.Fatal(err)
	}
	if s.Index != 18 || s.LastContact != 0 || !s.KnownLeader || s.Consistency != "linearizable" {
		t.Errorf("leader read = %+v", s)
	}

	headers = map[string]string{"X-Keyward-Last-Contact": "-1", "X-Keyward-Known-Leader": "false", "X-Keyward-Consistency": "stale"}
	if s, err = c.GetWith(ctx, "a", Selector{}, ReadOptions{Stale: true}); err != nil {
		t.Fatal(err)
	}
	if s.LastContact >= 0 || s.KnownLeader || s.Consistency != "stale" {
		t.Errorf("read from a node that never had a leader = %+v", s)
	}

	headers = map[string]string{"X-Keyward-Last-Contact": "junk", "X-Keyward-Known-Leader": "maybe"}
	if s, err = c.Get(ctx, "a", Selector{}); err != nil {
		t.Fatal(err)
	}
	if s.Index != 0 || s.LastContact != 0 || s.KnownLeader || s.Consistency != "" {
		t.Errorf("read without valid headers = %+v", s)
	}
}

func TestGetWithTooStale(t *testing.T) {
	c, _ := fake(t, jsonAnswer(503, wire.ErrorResponse{Error: wire.Error{Code: "too_stale", Message: "last contact 3s ago"}}))
	_, err := c.GetWith(context.Background(), "a", Selector{}, ReadOptions{MaxStale: time.Second})
	if !IsCode(err, "too_stale") {
		t.Fatalf("err = %v, want too_stale", err)
	}
}

func TestWithTLSConfig(t *testing.T) {
	v := "x"
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/secrets/moved" {
			http.Redirect(w, r, "/v1/secrets/a", http.StatusFound)
			return
		}
		jsonAnswer(200, wire.SecretResponse{Path: "a", Value: &v})(w, r)
	}))
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	ctx := context.Background()

	c, err := New(srv.URL, WithTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	if err != nil {
		t.Fatal(err)
	}
	if s, err := c.Get(ctx, "a", Selector{}); err != nil || string(s.Value) != v {
		t.Fatalf("Get over TLS = %+v, %v", s, err)
	}
	if _, err := c.Get(ctx, "moved", Selector{}); !IsCode(err, "http_302") {
		t.Errorf("redirect: err = %v, want http_302", err)
	}
	tr, ok := c.hc.Transport.(*http.Transport)
	if !ok || tr.MaxIdleConnsPerHost < 256 || tr.TLSClientConfig == nil || tr.TLSClientConfig.RootCAs != pool {
		t.Errorf("transport = %#v", c.hc.Transport)
	}
	if c.hc.Timeout != DefaultTimeout {
		t.Errorf("timeout = %v, want %v", c.hc.Timeout, DefaultTimeout)
	}

	// Without the CA the server's certificate is refused.
	c, err = New(srv.URL, WithTLSConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "a", Selector{}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("unknown CA: err = %v", err)
	}

	// An earlier WithHTTPClient's timeout is kept and the caller's client is left alone.
	mine := &http.Client{Timeout: 3 * time.Second}
	c, err = New(srv.URL, WithHTTPClient(mine), WithTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	if err != nil {
		t.Fatal(err)
	}
	if c.hc.Timeout != 3*time.Second || mine.Transport != nil || mine.CheckRedirect != nil {
		t.Errorf("client timeout %v, caller's client changed: %+v", c.hc.Timeout, mine)
	}
	if _, err := c.Get(ctx, "a", Selector{}); err != nil {
		t.Fatal(err)
	}
}

func TestMetrics(t *testing.T) {
	const text = "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 1.2e+07\n"
	var accept string
	c, reqs := fake(t, func(w http.ResponseWriter, r *http.Request) {
		accept = r.Header.Get("Accept")
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write([]byte(text))
	})
	b, err := c.Metrics(context.Background())
	if err != nil || string(b) != text {
		t.Fatalf("Metrics = %q, %v", b, err)
	}
	if r := (*reqs)[0]; r.method != "GET" || r.rawPath != "/metrics" || !strings.HasPrefix(accept, "text/plain") {
		t.Errorf("request = %+v, Accept %q", r, accept)
	}

	c, _ = fake(t, func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	if _, err := c.Metrics(context.Background()); !IsCode(err, "http_404") {
		t.Errorf("no metrics: err = %v", err)
	}
}
