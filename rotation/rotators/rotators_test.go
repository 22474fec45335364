package rotators_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyward/keyward/internal/pgtest"
	"github.com/keyward/keyward/rotation"
	"github.com/keyward/keyward/rotation/rotators"
)

// refs resolves referenced secrets from a map (the runner reads them from the store).
type refs map[string]string

func (r refs) Value(_ context.Context, path string) ([]byte, error) {
	v, ok := r[path]
	if !ok {
		return nil, fmt.Errorf("secret %q not found", path)
	}
	return []byte(v), nil
}

func TestRandomValues(t *testing.T) {
	cases := []struct {
		settings string
		match    string
	}{
		{``, `^[A-Za-z0-9]{32}$`},
		{`{"length":12,"alphabet":"numeric"}`, `^[0-9]{12}$`},
		{`{"length":8,"alphabet":"xy"}`, `^[xy]{8}$`},
		{`{"bytes":16}`, `^[0-9a-f]{32}$`},
		{`{"bytes":30,"encoding":"base64"}`, `^[A-Za-z0-9+/]{40}$`},
		{`{"bytes":30,"encoding":"base64url"}`, `^[A-Za-z0-9_-]{40}$`},
		{`{"length":20,"template":{"api_key":"{{value}}","nested":{"k":["{{value}}"]},"user":"svc"}}`, `^\{"api_key":"[A-Za-z0-9]{20}","nested":\{"k":\["[A-Za-z0-9]{20}"\]\},"user":"svc"\}$`},
	}
	for _, c := range cases {
		r, refs, err := rotators.NewRandom(json.RawMessage(c.settings))
		if err != nil || refs != nil {
			t.Fatalf("%s: %v", c.settings, err)
		}
		a, err := r.Generate(context.Background(), &rotation.Job{})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := r.Generate(context.Background(), &rotation.Job{})
		if !regexp.MustCompile(c.match).Match(a) || string(a) == string(b) {
			t.Errorf("%s: %q / %q", c.settings, a, b)
		}
	}
	for _, bad := range []string{`{"bytes":4,"length":3}`, `{"bytes":4,"encoding":"rot13"}`, `{"length":3,"alphabet":"a"}`,
		`{"template":{"x":"y"}}`, `{"template":[1]}`, `{"extra":1}`, `[]`} {
		if _, _, err := rotators.NewRandom(json.RawMessage(bad)); !errors.Is(err, rotation.ErrInvalidPolicy) {
			t.Errorf("%s: %v, want ErrInvalidPolicy", bad, err)
		}
	}
}

// hookServer is a real HTTP endpoint implementing the webhook steps; it checks signatures
// with its own HMAC computation and records the steps it accepted.
type hookServer struct {
	key      []byte
	mu       sync.Mutex
	steps    []string
	values   map[string]string // step -> value received
	failStep string
	mint     string // value to answer create with
	rejected int
}

func (h *hookServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	ts := r.Header.Get(rotators.HeaderTimestamp)
	mac := hmac.New(sha256.New, h.key)
	mac.Write([]byte(ts + "." + string(body)))
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	sec := 0
	fmt.Sscan(ts, &sec)
	if !hmac.Equal([]byte(want), []byte(r.Header.Get(rotators.HeaderSignature))) || time.Since(time.Unix(int64(sec), 0)).Abs() > time.Minute {
		h.mu.Lock()
		h.rejected++
		h.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var req rotators.WebhookRequest
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if req.Step == h.failStep {
		http.Error(w, "no", http.StatusBadGateway)
		return
	}
	h.steps = append(h.steps, req.Step)
	h.values[req.Step] = req.Value
	if req.Step == rotators.HookCreate && h.mint != "" {
		_ = json.NewEncoder(w).Encode(rotators.WebhookCreateResponse{Value: h.mint})
	}
}

func TestWebhookSignedSteps(t *testing.T) {
	hs := &hookServer{key: []byte("hook-signing-key"), values: map[string]string{}}
	srv := httptest.NewServer(hs)
	defer srv.Close()
	settings := fmt.Sprintf(`{"url":%q,"hmac_key":"hooks/key","timeout":"2s","random":{"length":24}}`, srv.URL)
	rt, rs, err := rotators.NewWebhook(json.RawMessage(settings))
	if err != nil || len(rs) != 1 || rs[0] != "hooks/key" {
		t.Fatalf("factory: %v %v", rs, err)
	}
	ctx := context.Background()
	j := &rotation.Job{Path: "ext/api-key", RotationID: "r-1", Seq: 1, Refs: refs{"hooks/key": "hook-signing-key"}}
	v, err := rt.Generate(ctx, j)
	if err != nil || len(v) != 24 {
		t.Fatalf("generate: %q %v", v, err)
	}
	for _, step := range []func() error{
		func() error { return rt.Apply(ctx, j, v) },
		func() error { return rt.Test(ctx, j, v) },
		func() error { return rt.Finish(ctx, j, v) },
		func() error { return rt.Revoke(ctx, j, []byte("old-key"), v) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	if got := strings.Join(hs.steps, ","); got != "create,set,test,finish,revoke" {
		t.Fatalf("steps %s", got)
	}
	if hs.values["set"] != string(v) || hs.values["test"] != string(v) || hs.values["revoke"] != "old-key" || hs.rejected != 0 {
		t.Fatalf("values %v, rejected %d", hs.values, hs.rejected)
	}

	// The endpoint may mint the value itself.
	hs.mint = "minted-by-the-target"
	if v, err := rt.Generate(ctx, j); err != nil || string(v) != "minted-by-the-target" {
		t.Fatalf("minted: %q %v", v, err)
	}

	// A wrong key is refused by the receiver: the step fails without echoing anything.
	j.Refs = refs{"hooks/key": "another-key"}
	err = rt.Apply(ctx, j, []byte("the-new-value"))
	if err == nil || strings.Contains(err.Error(), "the-new-value") || hs.rejected != 1 {
		t.Fatalf("wrong key: %v (rejected %d)", err, hs.rejected)
	}
	// A failing test step fails with the status only.
	j.Refs = refs{"hooks/key": "hook-signing-key"}
	hs.failStep = rotators.HookTest
	if err := rt.Test(ctx, j, []byte("the-new-value")); err == nil || !strings.Contains(err.Error(), "502") || strings.Contains(err.Error(), "the-new-value") {
		t.Fatalf("failing test step: %v", err)
	}
	// A slow endpoint times out.
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer slow.Close()
	defer close(release)
	rt2, _, _ := rotators.NewWebhook(json.RawMessage(fmt.Sprintf(`{"url":%q,"hmac_key":"hooks/key","timeout":"200ms"}`, slow.URL)))
	if err := rt2.Finish(ctx, j, v); err == nil {
		t.Fatal("slow endpoint did not time out")
	}
}

func login(ctx context.Context, s *pgtest.Server, user, pw string) error {
	c, err := pgx.Connect(ctx, s.URLFor(user, pw))
	if err != nil {
		return err
	}
	return c.Close(ctx)
}

func TestPostgresAlternatingUsers(t *testing.T) {
	pg := pgtest.Start(t)
	pg.Exec(t, "CREATE ROLE app_blue LOGIN PASSWORD 'blue-initial'", "CREATE ROLE app_green NOLOGIN")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	adminJSON := fmt.Sprintf(`{"host":%q,"port":%d,"database":"postgres","username":%q,"password":%q,"sslmode":"disable"}`,
		pg.Host, pg.Port, pg.Admin, pg.Password)
	for name, conn := range map[string]string{"json": adminJSON, "url": pg.URL()} {
		t.Run(name, func(t *testing.T) {
			pg.Exec(t, "ALTER ROLE app_blue LOGIN PASSWORD 'blue-initial'", "ALTER ROLE app_green NOLOGIN")
			rt, rs, err := rotators.NewPostgres(json.RawMessage(`{"connection":"db/admin","roles":["app_blue","app_green"],"password_length":24}`))
			if err != nil || rs[0] != "db/admin" {
				t.Fatal(err)
			}
			j := &rotation.Job{Path: "db/app", Refs: refs{"db/admin": conn}, Current: []byte(`{"username":"app_blue","password":"blue-initial"}`)}
			v, err := rt.Generate(ctx, j)
			if err != nil {
				t.Fatal(err)
			}
			var nv rotators.PostgresValue
			if err := json.Unmarshal(v, &nv); err != nil || nv.Username != "app_green" || len(nv.Password) != 24 {
				t.Fatalf("generated %s", v)
			}
			if err := rt.Test(ctx, j, v); err == nil {
				t.Fatal("test passed before apply")
			}
			if err := rt.Apply(ctx, j, v); err != nil {
				t.Fatal(err)
			}
			if err := rt.Apply(ctx, j, v); err != nil { // repeated after a failover
				t.Fatal(err)
			}
			if err := rt.Test(ctx, j, v); err != nil {
				t.Fatal(err)
			}
			// During the grace period both logins work.
			if err := login(ctx, pg, "app_blue", "blue-initial"); err != nil {
				t.Fatalf("old login during grace: %v", err)
			}
			if err := rt.Revoke(ctx, j, j.Current, v); err != nil {
				t.Fatal(err)
			}
			if err := rt.Revoke(ctx, j, nil, v); err != nil { // repeated, old value unreadable
				t.Fatal(err)
			}
			if err := login(ctx, pg, "app_blue", "blue-initial"); err == nil {
				t.Fatal("old login still works after revoke")
			}
			if err := login(ctx, pg, "app_green", nv.Password); err != nil {
				t.Fatalf("new login: %v", err)
			}
			// The password is never in the SQL: the server only saw a SCRAM verifier.
			if strings.Contains(pg.Logs(), nv.Password) {
				t.Fatal("password in the PostgreSQL log")
			}
			// Discard disables a pending role that is not in use.
			j2 := &rotation.Job{Path: "db/app", Refs: j.Refs, Current: v}
			v2, _ := rt.Generate(ctx, j2)
			if err := rt.Apply(ctx, j2, v2); err != nil {
				t.Fatal(err)
			}
			var nv2 rotators.PostgresValue
			_ = json.Unmarshal(v2, &nv2)
			if nv2.Username != "app_blue" {
				t.Fatalf("second rotation uses %s", nv2.Username)
			}
			if err := rt.Discard(ctx, j2, v2); err != nil {
				t.Fatal(err)
			}
			if err := login(ctx, pg, "app_blue", nv2.Password); err == nil {
				t.Fatal("discarded login works")
			}
			if err := login(ctx, pg, "app_green", nv.Password); err != nil {
				t.Fatalf("current login after discard: %v", err)
			}
		})
	}
	// A wrong admin password fails Apply without naming any value.
	rt, _, _ := rotators.NewPostgres(json.RawMessage(`{"connection":"db/admin","roles":["app_blue","app_green"]}`))
	j := &rotation.Job{Refs: refs{"db/admin": pg.URLFor(pg.Admin, "wrong-admin-pw")}}
	err := rt.Apply(ctx, j, []byte(`{"username":"app_blue","password":"pw-that-must-not-leak"}`))
	if err == nil || strings.Contains(err.Error(), "pw-that-must-not-leak") || strings.Contains(err.Error(), "wrong-admin-pw") {
		t.Fatalf("bad admin: %v", err)
	}
}
