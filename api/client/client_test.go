package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keyward/keyward/api/wire"
)

// recorded is what the fake server saw of one request.
type recorded struct {
	method, rawPath, query, auth, contentType string
	body                                      []byte
}

// fake starts a server that records each request and answers with h.
func fake(t *testing.T, h func(w http.ResponseWriter, r *http.Request)) (*Client, *[]recorded) {
	t.Helper()
	var reqs []recorded
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		reqs = append(reqs, recorded{r.Method, r.URL.EscapedPath(), r.URL.RawQuery,
			r.Header.Get("Authorization"), r.Header.Get("Content-Type"), b})
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	c, err := New(srv.URL, WithToken("t0k"))
	if err != nil {
		t.Fatal(err)
	}
	return c, &reqs
}

func jsonAnswer(status int, v any) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
}

func TestNewAddr(t *testing.T) {
	for addr, want := range map[string]string{
		"http://127.0.0.1:8200":   "http://127.0.0.1:8200",
		"127.0.0.1:8200":          "http://127.0.0.1:8200",
		"localhost:8200":          "http://localhost:8200",
		"https://kw.example/api/": "https://kw.example/api",
	} {
		c, err := New(addr)
		if err != nil {
			t.Errorf("New(%q): %v", addr, err)
			continue
		}
		if got := c.base.String(); got != want {
			t.Errorf("New(%q) base = %q, want %q", addr, got, want)
		}
	}
	for _, addr := range []string{"", "ftp://x", "http://", "http://h/?q=1", "http://u:p@h"} {
		if _, err := New(addr); !errors.Is(err, ErrInvalidAddr) {
			t.Errorf("New(%q) err = %v, want ErrInvalidAddr", addr, err)
		}
	}
}

func TestPutEncoding(t *testing.T) {
	c, reqs := fake(t, jsonAnswer(200, wire.WriteResponse{Path: "p/x", Version: 3}))
	cas, desc := uint64(2), "d"
	res, err := c.Put(context.Background(), "p/x", []byte("héllo\n"), PutOptions{CAS: &cas, Description: &desc})
	if err != nil || res.Version != 3 {
		t.Fatalf("Put = %+v, %v", res, err)
	}
	if _, err := c.Put(context.Background(), "p/x", []byte{0xff, 0x00}, PutOptions{}); err != nil {
		t.Fatal(err)
	}
	r := (*reqs)[0]
	if r.method != http.MethodPut || r.rawPath != "/v1/secrets/p/x" || r.auth != "Bearer t0k" || r.contentType != "application/json" {
		t.Fatalf("request = %+v", r)
	}
	if got, want := string(r.body), `{"value":"héllo\n","cas":2,"description":"d"}`; got != want {
		t.Errorf("body = %s, want %s", got, want)
	}
	if got, want := string((*reqs)[1].body), `{"value_base64":"/wA="}`; got != want {
		t.Errorf("binary body = %s, want %s", got, want)
	}
}

func TestGetDecodesValueAndIndex(t *testing.T) {
	b64 := "/wA="
	text := "s3cr3t"
	answers := []wire.SecretResponse{{Path: "a", Version: 2, ValueBase64: &b64}, {Path: "a", Value: &text}}
	c, reqs := fake(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(wire.HeaderIndex, "42")
		jsonAnswer(200, answers[0])(w, r)
		answers = answers[1:]
	})
	s, err := c.Get(context.Background(), "a", Selector{Version: 2})
	if err != nil || string(s.Value) != "\xff\x00" || s.Index != 42 || s.Version != 2 {
		t.Fatalf("Get = %+v, %v", s, err)
	}
	s, err = c.Get(context.Background(), "a", Selector{State: "PREVIOUS"})
	if err != nil || string(s.Value) != text {
		t.Fatalf("Get = %+v, %v", s, err)
	}
	if (*reqs)[0].query != "version=2" || (*reqs)[1].query != "state=PREVIOUS" || (*reqs)[1].contentType != "" {
		t.Errorf("requests = %+v", *reqs)
	}
	if _, err := c.Get(context.Background(), "a", Selector{Version: 1, State: "CURRENT"}); !errors.Is(err, ErrAmbiguousSelector) {
		t.Errorf("both selectors: err = %v", err)
	}
}

func TestPathEscaping(t *testing.T) {
	c, reqs := fake(t, jsonAnswer(200, wire.VersionsResponse{}))
	for _, p := range []string{"prod/db pass", "a/../b", "a/./b", "x%y?z#"} {
		if _, err := c.Versions(context.Background(), p); err != nil {
			t.Fatalf("Versions(%q): %v", p, err)
		}
	}
	want := []string{"/v1/versions/prod/db%20pass", "/v1/versions/a/%2E%2E/b", "/v1/versions/a/%2E/b", "/v1/versions/x%25y%3Fz%23"}
	for i, w := range want {
		if got := (*reqs)[i].rawPath; got != w {
			t.Errorf("path %d = %q, want %q", i, got, w)
		}
	}
	for _, p := range []string{"", "/a", "a/", "a//b"} {
		if _, err := c.Versions(context.Background(), p); !errors.Is(err, ErrInvalidPath) {
			t.Errorf("Versions(%q) err = %v, want ErrInvalidPath", p, err)
		}
	}
}

func TestAPIError(t *testing.T) {
	cur := uint64(4)
	c, _ := fake(t, jsonAnswer(409, wire.ErrorResponse{Error: wire.Error{Code: "cas_mismatch", Message: "expected 3", CurrentVersion: &cur}}))
	_, err := c.Put(context.Background(), "a", []byte("v"), PutOptions{})
	ae, ok := errors.AsType[*APIError](err)
	if !ok || ae.Status != 409 || ae.CurrentVersion == nil || *ae.CurrentVersion != 4 || !IsCode(err, "cas_mismatch") {
		t.Fatalf("err = %#v", err)
	}
	if got, want := err.Error(), "cas_mismatch: expected 3 (HTTP 409)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if IsCode(errors.New("x"), "cas_mismatch") {
		t.Error("IsCode on a plain error")
	}
}

func TestNonJSONError(t *testing.T) {
	c, _ := fake(t, func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "bad gateway\nupstream down", http.StatusBadGateway)
	})
	_, err := c.Restore(context.Background(), "a")
	if !IsCode(err, "http_502") || !strings.Contains(err.Error(), "bad gateway upstream down") {
		t.Fatalf("err = %v", err)
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	c, reqs := fake(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/v1/secrets/b", http.StatusMovedPermanently)
	})
	_, err := c.Put(context.Background(), "a", []byte("v"), PutOptions{})
	if !IsCode(err, "http_301") || len(*reqs) != 1 {
		t.Fatalf("err = %v after %d requests", err, len(*reqs))
	}
}

func TestResponseTooLarge(t *testing.T) {
	c, _ := fake(t, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"secrets":[],"next":"`))
		_, _ = w.Write([]byte(strings.Repeat("x", maxResponseBytes)))
	})
	if _, err := c.List(context.Background(), "", ListOptions{}); !errors.Is(err, ErrResponseTooLarge) {
		t.Fatalf("err = %v", err)
	}
}

func TestManageRequests(t *testing.T) {
	c, reqs := fake(t, jsonAnswer(200, map[string]any{}))
	ctx := context.Background()
	steps := []func() error{
		func() error { _, err := c.List(ctx, "prod/", ListOptions{Limit: 5, After: "prod/a b"}); return err },
		func() error { _, err := c.Destroy(ctx, "a", []uint64{1, 2}); return err },
		func() error { _, err := c.Delete(ctx, "a", true); return err },
		func() error { _, err := c.Delete(ctx, "a", false); return err },
		func() error { _, err := c.Restore(ctx, "a"); return err },
	}
	for i, f := range steps {
		if err := f(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	want := []recorded{
		{method: "GET", rawPath: "/v1/secrets", query: "after=prod%2Fa+b&limit=5&prefix=prod%2F"},
		{method: "POST", rawPath: "/v1/destroy/a", contentType: "application/json", body: []byte(`{"versions":[1,2]}`)},
		{method: "DELETE", rawPath: "/v1/secrets/a", query: "purge=true"},
		{method: "DELETE", rawPath: "/v1/secrets/a"},
		{method: "POST", rawPath: "/v1/restore/a"},
	}
	for i, w := range want {
		g := (*reqs)[i]
		if g.method != w.method || g.rawPath != w.rawPath || g.query != w.query || g.contentType != w.contentType || string(g.body) != string(w.body) {
			t.Errorf("request %d = %+v, want %+v", i, g, w)
		}
	}
}

func TestHealth(t *testing.T) {
	body := wire.HealthResponse{NodeID: "n1", State: "Follower", Error: &wire.Error{Code: "no_leader", Message: "no leader"}}
	c, _ := fake(t, jsonAnswer(503, body))
	h, status, err := c.Health(context.Background())
	if err != nil || status != 503 || h.NodeID != "n1" || h.Error.Code != "no_leader" {
		t.Fatalf("Health = %+v, %d, %v", h, status, err)
	}
	c, _ = fake(t, jsonAnswer(401, wire.ErrorResponse{Error: wire.Error{Code: "unauthorized", Message: "no"}}))
	if _, status, err = c.Health(context.Background()); status != 401 || !IsCode(err, "unauthorized") {
		t.Fatalf("Health = %d, %v", status, err)
	}
}

func TestNoTokenNoHeader(t *testing.T) {
	var auth []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = r.Header.Values("Authorization")
		jsonAnswer(200, wire.HealthResponse{})(w, r)
	}))
	defer srv.Close()
	c, err := New(srv.URL, WithToken(""), WithHTTPClient(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Health(context.Background()); err != nil || len(auth) != 0 {
		t.Fatalf("err = %v, Authorization = %q", err, auth)
	}
}
