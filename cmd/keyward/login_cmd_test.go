package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/api/client"
	"github.com/keyward/keyward/api/wire"
)

// loginAnswer is what the fake server answers to init and logins.
var loginAnswer = map[string]any{"token": "kw_tok", "accessor": "acc-1", "principal": "USER/alice", "expires_at": "2026-01-02T03:04:05Z"}

// identityEnv is an environment naming addr and a token.
func identityEnv(addr string) map[string]string {
	return map[string]string{"KEYWARD_ADDR": addr, "KEYWARD_TOKEN": "envtok"}
}

// onlyRequest returns the one request the fake server got.
func onlyRequest(t *testing.T, reqs *[]seen) seen {
	t.Helper()
	if len(*reqs) != 1 {
		t.Fatalf("%d requests, want 1: %+v", len(*reqs), *reqs)
	}
	r := (*reqs)[0]
	*reqs = nil
	return r
}

func checkRequest(t *testing.T, r seen, method, path, body string) {
	t.Helper()
	if r.method != method || r.path != path || string(r.body) != body {
		t.Errorf("request %s %s %s, want %s %s %s", r.method, r.path, r.body, method, path, body)
	}
}

func TestOperatorInit(t *testing.T) {
	addr, reqs := fakeServer(t, routes(map[string]any{"POST /v1/sys/init": map[string]any{"token": "kw_root", "accessor": "acc-0", "principal": "USER/root"}}))
	env := identityEnv(addr)

	code, out, errOut := runCLI(env, "adminpw\n", "operator", "init", "--admin", "root", "--password-stdin")
	if code != 0 || errOut != "" {
		t.Fatalf("code %d err %q", code, errOut)
	}
	r := onlyRequest(t, reqs)
	checkRequest(t, r, "POST", "/v1/sys/init", `{"admin":"root","password":"adminpw"}`)
	if r.auth != "" {
		t.Errorf("init sent a token: %q", r.auth)
	}
	for _, want := range []string{"shown only once", "Token:      kw_root", "Principal:  USER/root", "Expires:    never", "\nexport KEYWARD_TOKEN=kw_root\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	code, out, _ = runCLI(env, "", "operator", "init", "-o", "json")
	var l client.LoginResponse
	if code != 0 || json.Unmarshal([]byte(out), &l) != nil || l.Token != "kw_root" || l.Accessor != "acc-0" {
		t.Errorf("json: code %d out %s", code, out)
	}
	checkRequest(t, onlyRequest(t, reqs), "POST", "/v1/sys/init", `{"admin":"admin"}`)

	// A password needs stdin; an empty one is refused before any request.
	for _, tc := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{"\n", []string{"--password-stdin"}, "password from stdin is empty"},
		{"", []string{"--admin", ""}, "--admin is empty"},
		{"", []string{"pw"}, `unexpected argument "pw"`},
	} {
		code, _, errOut := runCLI(env, tc.stdin, append([]string{"operator", "init"}, tc.args...)...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: code %d err %q, want %q", tc.args, code, errOut, tc.want)
		}
	}
	if len(*reqs) != 0 {
		t.Errorf("usage errors reached the server: %+v", *reqs)
	}

	addr, _ = fakeServer(t, reply(409, wire.ErrorResponse{Error: wire.Error{Code: "already_initialized", Message: "cluster already initialized"}}))
	if code, _, errOut := runCLI(identityEnv(addr), "", "operator", "init"); code != 1 || errOut != "error: already_initialized: cluster already initialized\n" {
		t.Errorf("second init: code %d err %q", code, errOut)
	}
}

func TestLoginUserpass(t *testing.T) {
	addr, reqs := fakeServer(t, routes(map[string]any{"POST /v1/auth/userpass/login": loginAnswer}))
	env := identityEnv(addr)

	code, out, errOut := runCLI(env, "s3cret\n", "login", "userpass", "alice")
	if code != 0 || errOut != "" {
		t.Fatalf("code %d err %q", code, errOut)
	}
	r := onlyRequest(t, reqs)
	checkRequest(t, r, "POST", "/v1/auth/userpass/login", `{"username":"alice","password":"s3cret"}`)
	if r.auth != "" {
		t.Errorf("login sent the old token: %q", r.auth)
	}
	want := "Token:      kw_tok\nAccessor:   acc-1\nPrincipal:  USER/alice\nExpires:    2026-01-02T03:04:05Z\n\nexport KEYWARD_TOKEN=kw_tok\n"
	if out != want {
		t.Errorf("output\n%s\nwant\n%s", out, want)
	}

	// Only one line ending goes; other white space is part of the password.
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(" pass word \r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCLI(env, "", "login", "userpass", "--password-file", pwFile, "alice", "-o", "json")
	var l client.LoginResponse
	if code != 0 || json.Unmarshal([]byte(out), &l) != nil || l.Token != "kw_tok" || !l.ExpiresAt.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("json: code %d out %s", code, out)
	}
	checkRequest(t, onlyRequest(t, reqs), "POST", "/v1/auth/userpass/login", `{"username":"alice","password":" pass word "}`)

	for _, tc := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{"pw", []string{"alice", "pw"}, "never from an argument"},
		{"pw", []string{}, "missing USER"},
		{"", []string{"alice"}, "password from stdin is empty"},
		{"pw", []string{""}, "USER is empty"},
	} {
		code, _, errOut := runCLI(env, tc.stdin, append([]string{"login", "userpass"}, tc.args...)...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: code %d err %q, want %q", tc.args, code, errOut, tc.want)
		}
	}
	if code, _, errOut := runCLI(env, "", "login", "userpass", "alice", "--password-file", filepath.Join(t.TempDir(), "none")); code != 1 || !strings.Contains(errOut, "read password") {
		t.Errorf("missing file: code %d err %q", code, errOut)
	}
	if len(*reqs) != 0 {
		t.Errorf("failed reads reached the server: %+v", *reqs)
	}

	addr, _ = fakeServer(t, reply(401, wire.ErrorResponse{Error: wire.Error{Code: "login_failed", Message: "wrong user name or password"}}))
	if code, out, errOut := runCLI(identityEnv(addr), "nope", "login", "userpass", "alice"); code != 1 || out != "" || !strings.Contains(errOut, "login_failed") {
		t.Errorf("refused login: code %d out %q err %q", code, out, errOut)
	}
}

func TestLoginAppRoleAndJWT(t *testing.T) {
	addr, reqs := fakeServer(t, routes(map[string]any{
		"POST /v1/auth/approle/login": map[string]any{"token": "kw_svc", "accessor": "a", "principal": "SERVICE/web"},
		"POST /v1/auth/jwt/login":     map[string]any{"token": "it's odd", "accessor": "a", "principal": "SERVICE/pod"},
	}))
	env := identityEnv(addr)

	code, out, errOut := runCLI(env, "  sid_123\n", "login", "approle", "--role-id", "rid-1")
	if code != 0 || !strings.Contains(out, "export KEYWARD_TOKEN=kw_svc\n") {
		t.Fatalf("code %d out %q err %q", code, out, errOut)
	}
	checkRequest(t, onlyRequest(t, reqs), "POST", "/v1/auth/approle/login", `{"role_id":"rid-1","secret_id":"sid_123"}`)

	sidFile := filepath.Join(t.TempDir(), "sid")
	if err := os.WriteFile(sidFile, []byte("sid_456\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCLI(env, "", "login", "approle", "--role-id", "rid-1", "--secret-id-file", sidFile); code != 0 {
		t.Fatalf("secret id file: code %d err %q", code, errOut)
	}
	checkRequest(t, onlyRequest(t, reqs), "POST", "/v1/auth/approle/login", `{"role_id":"rid-1","secret_id":"sid_456"}`)

	// A token that the shell would split is quoted in the export line.
	jwtFile := filepath.Join(t.TempDir(), "jwt")
	if err := os.WriteFile(jwtFile, []byte("eyJ.a.b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCLI(env, "", "login", "jwt", "--jwt-file", jwtFile)
	if code != 0 || !strings.Contains(out, `export KEYWARD_TOKEN='it'\''s odd'`+"\n") {
		t.Errorf("jwt: code %d out %q", code, out)
	}
	checkRequest(t, onlyRequest(t, reqs), "POST", "/v1/auth/jwt/login", `{"jwt":"eyJ.a.b"}`)
	if code, _, _ := runCLI(env, "eyJ.c.d", "login", "jwt", "-o", "json"); code != 0 {
		t.Errorf("jwt from stdin: code %d", code)
	}
	checkRequest(t, onlyRequest(t, reqs), "POST", "/v1/auth/jwt/login", `{"jwt":"eyJ.c.d"}`)

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"login", "approle"}, "--role-id is required"},
		{[]string{"login", "approle", "--role-id", "r", "sid_x"}, "never from an argument"},
		{[]string{"login", "jwt", "eyJ.a.b"}, "never from an argument"},
		{[]string{"login", "kerberos"}, `unknown login subcommand "kerberos"`},
		{[]string{"login"}, "Usage: keyward login <subcommand>"},
	} {
		code, _, errOut := runCLI(env, "x", tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: code %d err %q, want %q", tc.args, code, errOut, tc.want)
		}
	}
	if len(*reqs) != 0 {
		t.Errorf("usage errors reached the server: %+v", *reqs)
	}
}

func TestTokenCommands(t *testing.T) {
	addr, reqs := fakeServer(t, routes(map[string]any{
		"GET /v1/auth/token/self":    map[string]any{"principal_type": "USER", "principal_id": "alice", "method": "token", "roles": nil, "admin": false},
		"POST /v1/auth/token/renew":  map[string]any{"accessor": "acc-1", "principal": "USER/alice", "expires_at": "2026-01-02T03:04:05Z"},
		"POST /v1/auth/token/revoke": map[string]any{"revoked": true},
	}))
	env := identityEnv(addr)

	code, out, _ := runCLI(env, "", "token", "self")
	want := [][]string{{"Principal:", "USER/alice"}, {"Method:", "token"}, {"Roles:", "-"}, {"Admin:", "no"}}
	if got := tableRows(out); code != 0 || !equalRows(got, want) {
		t.Errorf("self: code %d out\n%s", code, out)
	}
	if r := onlyRequest(t, reqs); r.auth != "Bearer envtok" || r.path != "/v1/auth/token/self" {
		t.Errorf("self request %+v", r)
	}
	code, out, _ = runCLI(env, "", "token", "self", "-o", "json", "--token", "flagtok")
	if code != 0 || !strings.Contains(out, `"roles": []`) || !strings.Contains(out, `"principal_id": "alice"`) {
		t.Errorf("self json: code %d out %s", code, out)
	}
	if r := onlyRequest(t, reqs); r.auth != "Bearer flagtok" {
		t.Errorf("--token not sent: %+v", r)
	}

	code, out, _ = runCLI(env, "", "token", "renew")
	if code != 0 || !strings.Contains(out, "2026-01-02T03:04:05Z") || !strings.Contains(out, "acc-1") {
		t.Errorf("renew: code %d out %s", code, out)
	}
	checkRequest(t, onlyRequest(t, reqs), "POST", "/v1/auth/token/renew", "")

	for _, tc := range []struct {
		stdin string
		args  []string
		body  string
		out   string
	}{
		{"", nil, "", "Revoked the token\n"},
		{"", []string{"--accessor", "acc-9"}, `{"accessor":"acc-9"}`, "Revoked the token with accessor acc-9\n"},
		{" kw_other\n", []string{"--token-stdin"}, `{"token":"kw_other"}`, "Revoked the token read from stdin\n"},
	} {
		code, out, errOut := runCLI(env, tc.stdin, append([]string{"token", "revoke"}, tc.args...)...)
		if code != 0 || out != tc.out {
			t.Errorf("revoke %q: code %d out %q err %q", tc.args, code, out, errOut)
		}
		r := onlyRequest(t, reqs)
		checkRequest(t, r, "POST", "/v1/auth/token/revoke", tc.body)
		if r.auth != "Bearer envtok" {
			t.Errorf("revoke %q: auth %q", tc.args, r.auth)
		}
	}

	for _, tc := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{"kw_x", []string{"revoke", "--accessor", "a", "--token-stdin"}, "mutually exclusive"},
		{"", []string{"revoke", "--accessor", " "}, "--accessor is empty"},
		{"", []string{"revoke", "kw_x"}, "never from an argument"},
		{"", []string{"revoke", "--token-stdin"}, "token from stdin is empty"},
		{"", []string{"self", "x"}, `unexpected argument "x"`},
		{"", []string{"lookup"}, `unknown token subcommand "lookup"`},
	} {
		code, _, errOut := runCLI(env, tc.stdin, append([]string{"token"}, tc.args...)...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: code %d err %q, want %q", tc.args, code, errOut, tc.want)
		}
	}
	if len(*reqs) != 0 {
		t.Errorf("usage errors reached the server: %+v", *reqs)
	}

	addr, _ = fakeServer(t, reply(401, wire.ErrorResponse{Error: wire.Error{Code: "unauthenticated", Message: "invalid or expired token"}}))
	if code, _, errOut := runCLI(identityEnv(addr), "", "token", "self"); code != 1 || !strings.Contains(errOut, "error: unauthenticated: invalid or expired token") {
		t.Errorf("expired: code %d err %q", code, errOut)
	}
}

func TestLoginAndAdminHelp(t *testing.T) {
	for _, group := range []string{"login", "token", "user", "service", "role", "policy", "approle", "audit"} {
		g, ok := identityGroup(group)
		if !ok {
			t.Fatalf("no group %s", group)
		}
		for _, args := range [][]string{{group, "--help"}, {"help", group}} {
			if code, out, _ := runCLI(nil, "", args...); code != 0 || !strings.HasPrefix(out, "Usage: keyward "+group+" <subcommand>") {
				t.Errorf("%q: code %d out %q", args, code, out)
			}
		}
		for _, sc := range g.commands {
			for _, args := range [][]string{{group, sc.name, "--help"}, {"help", group, sc.name}} {
				code, out, _ := runCLI(nil, "", args...)
				if code != 0 || !strings.HasPrefix(out, "Usage: keyward "+group+" "+sc.name+" ") || !strings.Contains(out, "-addr") {
					t.Errorf("%q: code %d out %q", args, code, out)
				}
				// The group listing shows the first line of the summary: it must stand alone.
				if first := firstLine(sc.summary); !strings.HasSuffix(first, ".") {
					t.Errorf("%s %s: summary's first line %q is not a sentence", group, sc.name, first)
				}
			}
		}
	}
	for _, args := range [][]string{{"operator", "init", "--help"}, {"help", "operator", "init"}} {
		if code, out, _ := runCLI(nil, "", args...); code != 0 || !strings.HasPrefix(out, "Usage: keyward operator init ") {
			t.Errorf("%q: code %d out %q", args, code, out)
		}
	}
	code, out, _ := runCLI(nil, "", "help")
	for _, group := range []string{"login", "token", "user", "service", "role", "policy", "approle", "auth", "audit"} {
		if code != 0 || !strings.Contains(out, "\n  "+group+" ") {
			t.Errorf("top-level usage lacks %s:\n%s", group, out)
		}
	}
}
