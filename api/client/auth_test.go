package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// authServer imitates the login, renewal and token checks of the API: tokens are "tN",
// valid until their expiry on clock, unless revoked.
type authServer struct {
	t       *testing.T
	clock   *fakeClock
	ttl     time.Duration
	maxTTL  time.Duration
	mu      sync.Mutex
	next    int
	expires map[string]time.Time
	max     map[string]time.Time
	logins  atomic.Int32
	renews  atomic.Int32
	bodies  []map[string]string
	srv     *httptest.Server
}

func newAuthServer(t *testing.T, clock *fakeClock, ttl, maxTTL time.Duration) *authServer {
	s := &authServer{t: t, clock: clock, ttl: ttl, maxTTL: maxTTL, expires: map[string]time.Time{}, max: map[string]time.Time{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *authServer) revoke(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.expires, tok)
}

func (s *authServer) serve(w http.ResponseWriter, r *http.Request) {
	answer := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	refuse := func(code string) {
		answer(http.StatusUnauthorized, map[string]any{"error": map[string]string{"code": code, "message": "no"}})
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if strings.HasSuffix(r.URL.Path, "/login") {
		if r.Header.Get("Authorization") != "" {
			s.t.Errorf("a login carried credentials")
		}
		var body map[string]string
		_ = json.NewDecoder(r.Body).Decode(&body)
		s.bodies = append(s.bodies, body)
		if body["secret_id"] == "wrong" {
			refuse("login_failed")
			return
		}
		s.logins.Add(1)
		s.next++
		tok := fmt.Sprintf("t%d", s.next)
		s.expires[tok], s.max[tok] = now.Add(s.ttl), now.Add(s.maxTTL)
		answer(http.StatusOK, LoginResponse{Token: tok, Accessor: "a", Principal: "SERVICE/x", ExpiresAt: s.expires[tok]})
		return
	}
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	exp, ok := s.expires[tok]
	if !ok || !now.Before(exp) {
		refuse("unauthenticated")
		return
	}
	if r.URL.Path == "/v1/auth/token/renew" {
		s.renews.Add(1)
		s.expires[tok] = now.Add(s.ttl)
		if s.expires[tok].After(s.max[tok]) {
			s.expires[tok] = s.max[tok]
		}
		answer(http.StatusOK, LoginResponse{Accessor: "a", Principal: "SERVICE/x", ExpiresAt: s.expires[tok]})
		return
	}
	answer(http.StatusOK, map[string]any{"path": "a", "version": 1, "state": "CURRENT", "value": tok})
}

func newAuthClient(t *testing.T, s *authServer, a Auth) *Client {
	t.Helper()
	c, err := New(s.srv.URL, WithAuth(a))
	if err != nil {
		t.Fatal(err)
	}
	c.auth.now = s.clock.Now
	return c
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestAuthLoginOnceForConcurrentCallers: the first requests of many goroutines share one
// login, and the token it got is sent by all of them.
func TestAuthLoginOnceForConcurrentCallers(t *testing.T) {
	s := newAuthServer(t, newFakeClock(), time.Hour, 4*time.Hour)
	c := newAuthClient(t, s, AppRoleAuth{RoleID: "r", SecretID: "s"})
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			if v, err := c.Get(context.Background(), "a", Selector{}); err != nil || string(v.Value) != "t1" {
				t.Errorf("get: %v %v", v, err)
			}
		})
	}
	wg.Wait()
	if n := s.logins.Load(); n != 1 {
		t.Fatalf("%d logins, want 1", n)
	}
	if st := c.AuthStats(); st.Logins != 1 || st.ExpiresAt.IsZero() {
		t.Fatalf("stats %+v", st)
	}
	if s.bodies[0]["role_id"] != "r" || s.bodies[0]["secret_id"] != "s" {
		t.Fatalf("login body %v", s.bodies[0])
	}
}

// TestAuthRenewsThenLogsInAgain: at two thirds of its lifetime the token is renewed in the
// background while requests go on with it; once renewal no longer buys at least half a
// lifetime (the maximum TTL is near), the client logs in again.
func TestAuthRenewsThenLogsInAgain(t *testing.T) {
	clock := newFakeClock()
	s := newAuthServer(t, clock, 30*time.Second, 40*time.Second)
	c := newAuthClient(t, s, AppRoleAuth{RoleID: "r", SecretID: "s"})
	ctx := context.Background()
	get := func() string {
		t.Helper()
		v, err := c.Get(ctx, "a", Selector{})
		if err != nil {
			t.Fatal(err)
		}
		return string(v.Value)
	}
	if tok := get(); tok != "t1" {
		t.Fatalf("token %s", tok)
	}
	clock.Advance(21 * time.Second) // past 2/3 of 30s: renewal to min(now+30s, max 40s) = 19s left
	if tok := get(); tok != "t1" {
		t.Fatalf("token %s while renewing", tok)
	}
	waitFor(t, "a renewal", func() bool { return c.AuthStats().Renewals == 1 })
	clock.Advance(13 * time.Second) // past 2/3 of the 19s: renewal would leave 6s < 15s
	get()
	waitFor(t, "a second login", func() bool { return c.AuthStats().Logins == 2 })
	if tok := get(); tok != "t2" {
		t.Fatalf("token %s after the new login", tok)
	}
	if s.renews.Load() != 2 {
		t.Fatalf("%d renewals asked, want 2", s.renews.Load())
	}
}

// TestAuthExpiredTokenWaitsForLogin: a caller whose token has expired waits for the new login
// instead of sending a dead token.
func TestAuthExpiredTokenWaitsForLogin(t *testing.T) {
	clock := newFakeClock()
	s := newAuthServer(t, clock, 30*time.Second, time.Hour)
	c := newAuthClient(t, s, AppRoleAuth{RoleID: "r", SecretID: "s"})
	ctx := context.Background()
	if _, err := c.Get(ctx, "a", Selector{}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute)
	v, err := c.Get(ctx, "a", Selector{})
	if err != nil || string(v.Value) != "t2" {
		t.Fatalf("after expiry: %v %v", v, err)
	}
}

// TestAuthReloginOn401: a revoked token is answered with 401; the client logs in again once
// and repeats the request, writes included. Many callers hitting the 401 share one login.
func TestAuthReloginOn401(t *testing.T) {
	s := newAuthServer(t, newFakeClock(), time.Hour, time.Hour)
	c := newAuthClient(t, s, AppRoleAuth{RoleID: "r", SecretID: "s"})
	ctx := context.Background()
	if _, err := c.Get(ctx, "a", Selector{}); err != nil {
		t.Fatal(err)
	}
	s.revoke("t1")
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if v, err := c.Get(ctx, "a", Selector{}); err != nil || string(v.Value) != "t2" {
				t.Errorf("after revocation: %v %v", v, err)
			}
		})
	}
	wg.Wait()
	if n := s.logins.Load(); n != 2 {
		t.Fatalf("%d logins, want 2", n)
	}
	s.revoke("t2")
	if _, err := c.Put(ctx, "a", []byte("v"), PutOptions{}); err != nil {
		t.Fatalf("write after revocation: %v", err)
	}
}

// TestAuthLoginFailure: a refused login is the caller's error and is retried on the next
// request, not cached.
func TestAuthLoginFailure(t *testing.T) {
	s := newAuthServer(t, newFakeClock(), time.Hour, time.Hour)
	dir := t.TempDir()
	sid := filepath.Join(dir, "secret-id")
	if err := os.WriteFile(sid, []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newAuthClient(t, s, AppRoleAuth{RoleID: "r", SecretIDFile: sid})
	ctx := context.Background()
	if _, err := c.Get(ctx, "a", Selector{}); !IsCode(err, "login_failed") {
		t.Fatalf("want login_failed, got %v", err)
	}
	if err := os.WriteFile(sid, []byte("right\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "a", Selector{}); err != nil {
		t.Fatalf("after the secret id file was replaced: %v", err)
	}
	if st := c.AuthStats(); st.Logins != 1 || st.LoginFailures != 1 {
		t.Fatalf("stats %+v", st)
	}
	if got := s.bodies[len(s.bodies)-1]["secret_id"]; got != "right" {
		t.Fatalf("secret id sent %q", got)
	}
	if err := os.WriteFile(sid, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := (AppRoleAuth{RoleID: "r", SecretIDFile: sid}).Login(ctx, c); err == nil {
		t.Fatal("an empty secret id file was accepted")
	}
}

// TestJWTFileAndTokenFile: the JWT file is read on each login; a token file is read again
// after the server refuses its token.
func TestJWTFileAndTokenFile(t *testing.T) {
	s := newAuthServer(t, newFakeClock(), time.Hour, time.Hour)
	dir := t.TempDir()
	jwtFile := filepath.Join(dir, "token")
	if err := os.WriteFile(jwtFile, []byte("jwt-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newAuthClient(t, s, JWTFile(jwtFile))
	ctx := context.Background()
	if _, err := c.Get(ctx, "a", Selector{}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(jwtFile, []byte("jwt-2"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.revoke("t1")
	if _, err := c.Get(ctx, "a", Selector{}); err != nil {
		t.Fatal(err)
	}
	if s.bodies[0]["jwt"] != "jwt-1" || s.bodies[1]["jwt"] != "jwt-2" {
		t.Fatalf("JWTs sent: %v", s.bodies)
	}

	// The token file names a token the fake server issued.
	tokFile := filepath.Join(dir, "kw-token")
	if err := os.WriteFile(tokFile, []byte("t2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tc := newAuthClient(t, s, TokenFileAuth{Path: tokFile})
	if v, err := tc.Get(ctx, "a", Selector{}); err != nil || string(v.Value) != "t2" {
		t.Fatalf("token file: %v %v", v, err)
	}
	s.revoke("t2")
	if _, err := tc.Get(ctx, "a", Selector{}); !IsCode(err, "unauthenticated") {
		t.Fatalf("a revoked file token: %v", err)
	}
	if err := os.WriteFile(tokFile, []byte("t1"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.expires["t1"] = s.clock.Now().Add(time.Hour)
	s.mu.Unlock()
	if v, err := tc.Get(ctx, "a", Selector{}); err != nil || string(v.Value) != "t1" {
		t.Fatalf("replaced token file: %v %v", v, err)
	}
}

// TestLeaderRedirect: a write sent to a follower asks for a redirect, goes to the leader it
// names, and later requests go to the leader directly. A redirect to a node the client does
// not know is not followed: the follower forwards instead, and the client stops asking.
func TestLeaderRedirect(t *testing.T) {
	var leaderHits, followerHits, asked atomic.Int32
	leader := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaderHits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"path":"a","version":2,"state":"CURRENT"}`))
	}))
	defer leader.Close()
	target := leader.URL
	follower := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		followerHits.Add(1)
		if r.Header.Get("X-Keyward-Redirect") == "true" {
			asked.Add(1)
			w.Header().Set("Location", target+r.URL.RequestURI())
			w.WriteHeader(http.StatusTemporaryRedirect)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"path":"a","version":2,"state":"CURRENT"}`))
	}))
	defer follower.Close()
	ctx := context.Background()

	c, err := New(follower.URL + "," + leader.URL)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := c.Put(ctx, "a", []byte("v"), PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if followerHits.Load() != 1 || leaderHits.Load() != 3 || c.pref.Load() != 1 {
		t.Fatalf("follower %d, leader %d requests, preferred node %d", followerHits.Load(), leaderHits.Load(), c.pref.Load())
	}

	target = "http://unknown.invalid:1"
	followerHits.Store(0)
	asked.Store(0)
	c, _ = New(follower.URL + "," + leader.URL)
	for range 3 {
		if _, err := c.Put(ctx, "a", []byte("v"), PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if asked.Load() != 1 || followerHits.Load() != 4 || c.pref.Load() != 0 {
		t.Fatalf("redirect asked %d times, follower %d requests, preferred %d", asked.Load(), followerHits.Load(), c.pref.Load())
	}
	c1, _ := New(follower.URL)
	if _, err := c1.Put(ctx, "a", []byte("v"), PutOptions{}); err != nil || asked.Load() != 1 {
		t.Fatalf("a one-node client asked for a redirect: %v", err)
	}
}
