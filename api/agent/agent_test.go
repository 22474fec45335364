package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyward/keyward/api/client"
)

// values is the cluster as the tests' fetch function sees it: path → value, or an error for
// every path when down is set.
type values struct {
	mu   sync.Mutex
	m    map[string]string
	down error
}

func (v *values) set(path, val string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.m[path] = val
}

func (v *values) setDown(err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.down = err
}

func (v *values) fetch(_ context.Context, path string, sel client.Selector) (*client.Secret, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.down != nil {
		return nil, v.down
	}
	val, ok := v.m[path]
	if !ok {
		return nil, &client.APIError{Status: 404, Code: "not_found", Message: "no secret " + path}
	}
	s := &client.Secret{Value: []byte(val)}
	s.Path, s.Version, s.State = path, 1, "CURRENT"
	return s, nil
}

var errOutage = &client.APIError{Status: 503, Code: "no_leader", Message: "no leader"}

// testAgent returns an agent whose cache reads from v instead of a cluster.
func testAgent(t *testing.T, cfg Config, v *values) *Agent {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "http://127.0.0.1:1"
	}
	if cfg.Auth.Method == "" {
		cfg.Auth = AuthConfig{Method: "token", TokenFile: filepath.Join(t.TempDir(), "none")}
	}
	a, err := New(&cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	a.cache.Close()
	a.cache = client.NewCache(v.fetch, client.CacheOptions{TTL: time.Duration(cfg.Cache.TTL)})
	t.Cleanup(a.cache.Close)
	a.metrics = newMetrics(a.cache, a.client)
	return a
}

func TestRenderFunctions(t *testing.T) {
	v := &values{m: map[string]string{"db": `{"user":"app","password":"p\"1","port":5432}`, "plain": "x y"}}
	cache := client.NewCache(v.fetch, client.CacheOptions{})
	defer cache.Close()
	for _, tc := range []struct {
		tmpl, want, err string
	}{
		{`u={{ secret "db" | field "user" }} p={{ secret "db" | field "password" }} port={{ secret "db" | field "port" }}`,
			`u=app p=p"1 port=5432`, ""},
		{`{{ secret "plain" }}`, "x y", ""},
		{`{{ secretState "plain" "CURRENT" }}/{{ secretVersion "plain" 1 }}`, "x y/x y", ""},
		{`{{ secret "plain" | field "user" }}`, "", "not a JSON object"},
		{`{{ secret "db" | field "nope" }}`, "", "not a JSON object"},
		{`{{ secret "missing" }}`, "", "not_found"},
	} {
		tm, err := parseTemplate(TemplateConfig{Contents: tc.tmpl, Destination: "x"})
		if err != nil {
			t.Fatal(err)
		}
		r, err := render(context.Background(), tm, cache.Get)
		switch {
		case tc.err == "" && (err != nil || string(r.out) != tc.want):
			t.Errorf("%s: got %q, %v; want %q", tc.tmpl, r.out, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: error %v, want one with %q", tc.tmpl, err, tc.err)
		case err != nil && strings.Contains(err.Error(), "p\\\"1"):
			t.Errorf("%s: the error quotes the value: %v", tc.tmpl, err)
		}
	}
	if _, err := parseTemplate(TemplateConfig{Contents: "{{ secret ", Destination: "x"}); err == nil {
		t.Error("a broken template parsed")
	}
}

func TestWriteIfChanged(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "out.env")
	changed, err := writeIfChanged(f, []byte("A=1\n"), 0o600)
	if err != nil || !changed {
		t.Fatalf("first write: %v %v", changed, err)
	}
	fi, _ := os.Stat(f)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	ino := fi.Sys().(*syscall.Stat_t).Ino
	if changed, err := writeIfChanged(f, []byte("A=1\n"), 0o600); err != nil || changed {
		t.Fatalf("same content: %v %v", changed, err)
	}
	fi, _ = os.Stat(f)
	if fi.Sys().(*syscall.Stat_t).Ino != ino {
		t.Fatal("an unchanged file was replaced")
	}
	if changed, err := writeIfChanged(f, []byte("A=2\n"), 0o640); err != nil || !changed {
		t.Fatalf("new content: %v %v", changed, err)
	}
	b, _ := os.ReadFile(f)
	fi, _ = os.Stat(f)
	if string(b) != "A=2\n" || fi.Mode().Perm() != 0o640 || fi.Sys().(*syscall.Stat_t).Ino == ino {
		t.Fatalf("after a change: %q %v (replaced: %v)", b, fi.Mode(), fi.Sys().(*syscall.Stat_t).Ino != ino)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("left-over files: %v", entries)
	}
	// A write that cannot happen leaves the old file and no temporary file.
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o700)
	if os.Geteuid() != 0 { // root ignores directory permissions
		if _, err := writeIfChanged(f, []byte("A=3\n"), 0o600); err == nil {
			t.Fatal("write into a read-only directory succeeded")
		}
		if b, _ := os.ReadFile(f); string(b) != "A=2\n" {
			t.Fatalf("failed write changed the file: %q", b)
		}
	}
}

// TestAgentRendersKeepsFileAndRunsCommand: the agent renders a file (0600), rewrites it and
// runs the command when the value changes, and during an outage or a failed render keeps the
// file as it is and runs nothing.
func TestAgentRendersKeepsFileAndRunsCommand(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "db.env")
	runs := filepath.Join(dir, "runs")
	v := &values{m: map[string]string{"db": `{"password":"p1"}`}}
	a := testAgent(t, Config{
		Cache:   CacheConfig{TTL: Duration(time.Hour)},
		Secrets: []SecretConfig{{Path: "db"}},
		Templates: []TemplateConfig{{Contents: `PASSWORD={{ secret "db" | field "password" }}` + "\n", Destination: dest,
			Command: []string{"/bin/sh", "-c", "echo ran >> " + runs}}},
	}, v)
	ctx := context.Background()
	a.Tick(ctx)
	if b, _ := os.ReadFile(dest); string(b) != "PASSWORD=p1\n" {
		t.Fatalf("rendered %q", b)
	}
	if fi, _ := os.Stat(dest); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	a.Tick(ctx)
	if b, _ := os.ReadFile(runs); string(b) != "ran\n" {
		t.Fatalf("command runs %q, want one", b)
	}
	v.set("db", `{"password":"p2"}`)
	a.cache.Invalidate("db")
	a.Tick(ctx)
	if b, _ := os.ReadFile(dest); string(b) != "PASSWORD=p2\n" {
		t.Fatalf("rendered %q after the change", b)
	}
	if b, _ := os.ReadFile(runs); string(b) != "ran\nran\n" {
		t.Fatalf("command runs %q, want two", b)
	}

	// Outage: the cached value renders the same bytes, so the file is not touched; with
	// nothing cached the render fails and the file stays as it is.
	v.setDown(errOutage)
	a.Tick(ctx)
	a.cache.Invalidate("db")
	a.Tick(ctx)
	if b, _ := os.ReadFile(dest); string(b) != "PASSWORD=p2\n" {
		t.Fatalf("file changed during the outage: %q", b)
	}
	v.setDown(nil)
	v.set("db", `not json`)
	a.Tick(ctx)
	if b, _ := os.ReadFile(dest); string(b) != "PASSWORD=p2\n" {
		t.Fatalf("a failed render changed the file: %q", b)
	}
	if b, _ := os.ReadFile(runs); string(b) != "ran\nran\n" {
		t.Fatalf("command ran without a change: %q", b)
	}

	// A failing command is counted; a slow one is killed at its timeout.
	a2 := testAgent(t, Config{Templates: []TemplateConfig{
		{Contents: "x", Destination: filepath.Join(dir, "f1"), Command: []string{"/bin/false"}},
		{Contents: "y", Destination: filepath.Join(dir, "f2"), Command: []string{"/bin/sleep", "30"}, CommandTimeout: Duration(100 * time.Millisecond)},
	}}, v)
	start := time.Now()
	a2.Tick(ctx)
	if time.Since(start) > 20*time.Second {
		t.Fatal("the command timeout did not stop the slow command")
	}
	body := scrape(t, a2)
	for _, want := range []string{"keyward_agent_command_runs_total 2", "keyward_agent_command_errors_total 2", "keyward_agent_renders_total 2"} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
}

func scrape(t *testing.T, a *Agent) string {
	t.Helper()
	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}

// TestLocalEndpoint: configured secrets are served with their staleness; others are not; the
// local token is required on TCP when configured.
func TestLocalEndpoint(t *testing.T) {
	tokFile := filepath.Join(t.TempDir(), "tok")
	if err := os.WriteFile(tokFile, []byte("local-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	v := &values{m: map[string]string{"app/db": "pw", "app/bin": "\xff\x00"}}
	a := testAgent(t, Config{
		Cache:   CacheConfig{TTL: Duration(time.Hour)},
		Secrets: []SecretConfig{{Path: "app/db"}, {Path: "app/bin"}, {Path: "app/db", State: "PREVIOUS"}},
		Listen:  ListenConfig{Address: "127.0.0.1:0", TokenFile: tokFile},
	}, v)
	h := a.Handler()
	get := func(url, token string) (*httptest.ResponseRecorder, map[string]any) {
		req := httptest.NewRequest(http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var out map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &out)
		return rec, out
	}
	if rec, _ := get("/v1/secret/app/db", ""); rec.Code != http.StatusUnauthorized {
		t.Fatalf("no token: %d", rec.Code)
	}
	if rec, _ := get("/v1/secret/app/db", "wrong"); rec.Code != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", rec.Code)
	}
	rec, out := get("/v1/secret/app/db", "local-secret")
	if rec.Code != http.StatusOK || out["value"] != "pw" || out["stale"] != false || rec.Header().Get(HeaderStale) != "false" {
		t.Fatalf("configured secret: %d %v", rec.Code, out)
	}
	if rec, _ := get("/v1/secret/app/db?format=raw", "local-secret"); rec.Body.String() != "pw" {
		t.Fatalf("raw: %q", rec.Body.String())
	}
	if _, out := get("/v1/secret/app/bin", "local-secret"); out["value_base64"] != "/wA=" {
		t.Fatalf("binary: %v", out)
	}
	if rec, out := get("/v1/secret/app/other", "local-secret"); rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "not_configured") {
		t.Fatalf("unconfigured secret: %d %v", rec.Code, out)
	}
	if rec, _ := get("/v1/secret/app/db?version=2", "local-secret"); rec.Code != http.StatusNotFound {
		t.Fatalf("unconfigured selector: %d", rec.Code)
	}
	if rec, _ := get("/v1/secret/app/db?state=PREVIOUS", "local-secret"); rec.Code != http.StatusOK {
		t.Fatalf("configured selector: %d", rec.Code)
	}
	// Metrics need no token.
	if body := scrape(t, a); !strings.Contains(body, "keyward_client_cache_hits_total") || !strings.Contains(body, `keyward_agent_requests_total{code="401"} 2`) {
		t.Fatalf("metrics:\n%s", body)
	}

	// Outage: the cached value is served stale; a secret never cached is a 503.
	v.setDown(errOutage)
	a.cache.Close()
	var clockMu sync.Mutex
	clock := time.Now()
	now := func() time.Time {
		clockMu.Lock()
		defer clockMu.Unlock()
		return clock
	}
	a.cache = client.NewCache(v.fetch, client.CacheOptions{TTL: time.Minute, Now: now})
	t.Cleanup(a.cache.Close)
	v.setDown(nil)
	if rec, _ := get("/v1/secret/app/db", "local-secret"); rec.Code != http.StatusOK {
		t.Fatal(rec.Body.String())
	}
	v.setDown(errOutage)
	clockMu.Lock()
	clock = clock.Add(2 * time.Minute)
	clockMu.Unlock()
	rec, out = get("/v1/secret/app/db", "local-secret")
	if rec.Code != http.StatusOK || out["stale"] != true || out["age_seconds"].(float64) < 120 || rec.Header().Get(HeaderStale) != "true" {
		t.Fatalf("stale read: %d %v", rec.Code, out)
	}
	if rec, _ := get("/v1/secret/app/bin", "local-secret"); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("never cached during an outage: %d %s", rec.Code, rec.Body.String())
	}
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	good := func() Config {
		return Config{Addr: "https://a:8200", Auth: AuthConfig{Method: "approle", RoleID: "r", SecretIDFile: "s"},
			Secrets: []SecretConfig{{Path: "a"}}}
	}
	c := good()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Cache.TTL != Duration(time.Minute) || c.RenderInterval != Duration(5*time.Second) || c.Listen.SocketMode != 0o600 {
		t.Fatalf("defaults: %+v", c)
	}
	for name, mutate := range map[string]func(*Config){
		"no addr":           func(c *Config) { c.Addr = "" },
		"unknown method":    func(c *Config) { c.Auth.Method = "magic" },
		"approle no secret": func(c *Config) { c.Auth.SecretIDFile = "" },
		"approle two roles": func(c *Config) { c.Auth.RoleIDFile = "f" },
		"cert without cert": func(c *Config) { c.Auth = AuthConfig{Method: "cert"} },
		"jwt without file":  func(c *Config) { c.Auth = AuthConfig{Method: "jwt"} },
		"nothing to do":     func(c *Config) { c.Secrets = nil },
		"ambiguous secret":  func(c *Config) { c.Secrets = []SecretConfig{{Path: "a", Version: 1, State: "CURRENT"}} },
		"template no dest":  func(c *Config) { c.Templates = []TemplateConfig{{Contents: "x"}} },
		"template two srcs": func(c *Config) { c.Templates = []TemplateConfig{{Contents: "x", Source: "y", Destination: "d"}} },
		"public listener":   func(c *Config) { c.Listen.Address = "0.0.0.0:8300" },
		"unix with token":   func(c *Config) { c.Listen = ListenConfig{Address: "unix:/tmp/s", TokenFile: "t"} },
	} {
		c := good()
		mutate(&c)
		if err := c.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
	file := filepath.Join(dir, "agent.json")
	body := `{"addr":"https://a:8200","auth":{"method":"jwt","jwt_file":"/var/run/token"},"cache":{"ttl":"30s"},
		"secrets":[{"path":"a","state":"PREVIOUS"}],"templates":[{"contents":"x","destination":"d","perms":"0640","command":["/bin/true"]}],
		"listen":{"address":"unix:/run/kw.sock","socket_mode":"0660"}}`
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	lc, err := LoadConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := lc.Validate(); err != nil {
		t.Fatal(err)
	}
	if lc.Cache.TTL != Duration(30*time.Second) || lc.Templates[0].Perms != 0o640 || lc.Listen.SocketMode != 0o660 ||
		lc.Secrets[0].State != "PREVIOUS" || lc.RenderInterval != Duration(5*time.Second) {
		t.Fatalf("loaded %+v", lc)
	}
	if err := os.WriteFile(file, []byte(`{"adr":"x"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(file); !errors.Is(err, ErrConfig) {
		t.Fatalf("unknown key: %v", err)
	}
	var buf bytes.Buffer
	_ = json.NewEncoder(&buf).Encode(lc)
	if !strings.Contains(buf.String(), `"perms":"0640"`) || !strings.Contains(buf.String(), `"ttl":"30s"`) {
		t.Fatalf("marshal: %s", buf.String())
	}
}

// TestRunListensAndStops: Run replaces a stale socket file left by a crash, serves on the
// socket with its mode, and on cancellation stops and removes the socket; a TCP listener on
// loopback serves too.
func TestRunListensAndStops(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "a.sock")
	stale, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	v := &values{m: map[string]string{"a": "1"}}
	a := testAgent(t, Config{Secrets: []SecretConfig{{Path: "a"}}, Listen: ListenConfig{Address: "unix:" + sock, SocketMode: 0o660}}, v)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- a.Run(ctx) }()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := hc.Get("http://agent/v1/secret/a?format=raw")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) == "1" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("endpoint never answered: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode: %v %v", fi, err)
	}
	cancel()
	select {
	case err := <-ran:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancellation")
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket left: %v", err)
	}

	// A regular file where the socket should be is not removed.
	if err := os.WriteFile(sock, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := testAgent(t, Config{Secrets: []SecretConfig{{Path: "a"}}, Listen: ListenConfig{Address: "unix:" + sock}}, v).Run(context.Background()); err == nil {
		t.Fatal("Run replaced a regular file with its socket")
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	a = testAgent(t, Config{Secrets: []SecretConfig{{Path: "a"}}, Listen: ListenConfig{Address: addr}}, v)
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	go func() { ran <- a.Run(ctx) }()
	deadline = time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/v1/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("TCP endpoint never answered: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
}
