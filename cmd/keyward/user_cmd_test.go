package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// okServer answers every request with a small JSON object, as the identity routes do.
func okServer(t *testing.T, v any) (string, *[]seen) {
	t.Helper()
	return fakeServer(t, func(w http.ResponseWriter, _ *http.Request) { _ = json.NewEncoder(w).Encode(v) })
}

// usageCases runs command lines that must fail with status 2 and the message want, and checks
// that none reached the server.
func usageCases(t *testing.T, env map[string]string, reqs *[]seen, cases []struct {
	args []string
	want string
}) {
	t.Helper()
	for _, tc := range cases {
		code, _, errOut := runCLI(env, "pw", tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: code %d err %q, want %q", tc.args, code, errOut, tc.want)
		}
	}
	if len(*reqs) != 0 {
		t.Errorf("usage errors reached the server: %+v", *reqs)
		*reqs = nil
	}
}

var principalsAnswer = map[string]any{"principals": []map[string]any{
	{"type": "ROLE", "id": "ops"},
	{"type": "USER", "id": "bob", "roles": []string{"ops", "auditors"}},
	{"type": "SERVICE", "id": "web", "roles": []string{"ops"}},
	{"type": "USER", "id": "alice", "admin": true},
	{"type": "ROLE", "id": "auditors", "admin": true},
}}

func TestUserAndServiceCommands(t *testing.T) {
	addr, reqs := okServer(t, map[string]bool{"ok": true})
	env := identityEnv(addr)

	for _, tc := range []struct {
		stdin        string
		args         []string
		method, path string
		body, out    string
	}{
		{"pw\n", []string{"user", "create", "alice", "--password-stdin", "--role", "ops", "--role", "dev, qa,ops", "--admin"},
			"PUT", "/v1/sys/principals/USER/alice", `{"password":"pw","roles":["ops","dev","qa"],"admin":true}`, "Created user alice\n"},
		{"", []string{"user", "create", "bob"}, "PUT", "/v1/sys/principals/USER/bob", `{}`, "Created user bob\n"},
		{"", []string{"user", "delete", "bob"}, "DELETE", "/v1/sys/principals/USER/bob", "", "Deleted user bob\n"},
		{"", []string{"service", "create", "web", "--role", "ops"}, "PUT", "/v1/sys/principals/SERVICE/web", `{"roles":["ops"]}`, "Created service web\n"},
		{"", []string{"service", "create", "CN=a b"}, "PUT", "/v1/sys/principals/SERVICE/CN=a%20b", `{}`, "Created service CN=a b\n"},
		{"", []string{"service", "delete", "web"}, "DELETE", "/v1/sys/principals/SERVICE/web", "", "Deleted service web\n"},
	} {
		code, out, errOut := runCLI(env, tc.stdin, tc.args...)
		if code != 0 || out != tc.out {
			t.Errorf("%q: code %d out %q err %q", tc.args, code, out, errOut)
		}
		r := onlyRequest(t, reqs)
		checkRequest(t, r, tc.method, tc.path, tc.body)
		if r.auth != "Bearer envtok" {
			t.Errorf("%q: auth %q", tc.args, r.auth)
		}
	}

	code, out, _ := runCLI(env, "", "user", "create", "carol", "--admin", "-o", "json")
	if code != 0 || !strings.Contains(out, `"type": "USER"`) || !strings.Contains(out, `"admin": true`) || strings.Contains(out, "password") {
		t.Errorf("json: code %d out %s", code, out)
	}
	*reqs = nil

	// An id the API cannot address fails in the client, before any request.
	code, _, errOut := runCLI(env, "", "service", "create", "spiffe://prod/web")
	if code != 1 || !strings.Contains(errOut, "holds a '/'") || len(*reqs) != 0 {
		t.Errorf("spiffe id: code %d err %q requests %d", code, errOut, len(*reqs))
	}

	usageCases(t, env, reqs, []struct {
		args []string
		want string
	}{
		{[]string{"user", "create", "bob", "pw"}, "never from an argument"},
		{[]string{"user", "create"}, "missing NAME"},
		{[]string{"user", "create", ""}, "NAME is empty"},
		{[]string{"user", "create", "bob", "--role", ""}, "empty name"},
		{[]string{"service", "create", "web", "--password-stdin"}, "flag provided but not defined: -password-stdin"},
		{[]string{"service", "delete"}, "missing ID"},
		{[]string{"user", "rename"}, `unknown user subcommand "rename"`},
	})

	addr, reqs = fakeServer(t, routes(map[string]any{"GET /v1/sys/principals": principalsAnswer}))
	env = identityEnv(addr)
	code, out, _ = runCLI(env, "", "user", "list")
	want := [][]string{{"ID", "ADMIN", "ROLES"}, {"alice", "yes", "-"}, {"bob", "no", "ops,auditors"}}
	if got := tableRows(out); code != 0 || !equalRows(got, want) {
		t.Errorf("user list: code %d\n%s", code, out)
	}
	code, out, _ = runCLI(env, "", "service", "list", "-o", "json")
	var got struct {
		Principals []struct{ Type, ID string }
	}
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || len(got.Principals) != 1 || got.Principals[0].ID != "web" {
		t.Errorf("service list json: code %d out %s", code, out)
	}
}

func TestRoleCommands(t *testing.T) {
	addr, reqs := okServer(t, map[string]bool{"member": true})
	env := identityEnv(addr)
	for _, tc := range []struct {
		args         []string
		method, path string
		body, out    string
	}{
		{[]string{"role", "create", "ops"}, "PUT", "/v1/sys/principals/ROLE/ops", `{}`, "Created role ops\n"},
		{[]string{"role", "create", "auditors", "--admin"}, "PUT", "/v1/sys/principals/ROLE/auditors", `{"admin":true}`, "Created role auditors\n"},
		{[]string{"role", "add-member", "ops", "service/web"}, "PUT", "/v1/sys/roles/ops/members/SERVICE/web", "", "Added SERVICE/web to role ops\n"},
		{[]string{"role", "remove-member", "ops", "USER/alice"}, "DELETE", "/v1/sys/roles/ops/members/USER/alice", "", "Removed USER/alice from role ops\n"},
		{[]string{"role", "delete", "ops"}, "DELETE", "/v1/sys/principals/ROLE/ops", "", "Deleted role ops\n"},
	} {
		code, out, errOut := runCLI(env, "", tc.args...)
		if code != 0 || out != tc.out {
			t.Errorf("%q: code %d out %q err %q", tc.args, code, out, errOut)
		}
		checkRequest(t, onlyRequest(t, reqs), tc.method, tc.path, tc.body)
	}
	usageCases(t, env, reqs, []struct {
		args []string
		want string
	}{
		{[]string{"role", "add-member", "ops", "alice"}, "principal must be TYPE/ID"},
		{[]string{"role", "add-member", "ops", "GROUP/x"}, "principal must be TYPE/ID"},
		{[]string{"role", "add-member", "ops", "USER/"}, "principal must be TYPE/ID"},
		{[]string{"role", "add-member", "ops"}, "missing ROLE"},
		{[]string{"role", "remove-member", "", "USER/a"}, "ROLE is empty"},
		{[]string{"role", "create", "x", "--role", "y"}, "flag provided but not defined: -role"},
	})

	addr, _ = fakeServer(t, routes(map[string]any{"GET /v1/sys/principals": principalsAnswer}))
	code, out, _ := runCLI(identityEnv(addr), "", "role", "list")
	want := [][]string{{"ROLE", "ADMIN", "MEMBERS"}, {"auditors", "yes", "USER/bob"}, {"ops", "no", "USER/bob,SERVICE/web"}}
	if got := tableRows(out); code != 0 || !equalRows(got, want) {
		t.Errorf("role list: code %d\n%s", code, out)
	}
	code, out, _ = runCLI(identityEnv(addr), "", "role", "list", "-o", "json")
	var got struct {
		Roles []roleView
	}
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || len(got.Roles) != 2 || !got.Roles[0].Admin || len(got.Roles[1].Members) != 2 {
		t.Errorf("role list json: code %d out %s", code, out)
	}
}

func TestPolicyCommands(t *testing.T) {
	addr, reqs := fakeServer(t, routes(map[string]any{
		"POST /v1/sys/grants":       map[string]string{"id": "g-1"},
		"DELETE /v1/sys/grants/g-1": map[string]bool{"revoked": true},
		"GET /v1/sys/grants": map[string]any{"grants": []map[string]any{
			{"id": "g-1", "path_pattern": "prod/*", "principal_type": "ROLE", "principal_id": "ops", "actions": []string{"READ", "WRITE"}, "created_at": 1},
			{"id": "g-2", "secret_id": "sec-9", "principal_type": "USER", "principal_id": "alice", "actions": []string{"READ"},
				"expires_at": time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano(), "created_at": 1},
		}},
	}))
	env := identityEnv(addr)

	code, out, errOut := runCLI(env, "", "policy", "grant", "--principal", "role/ops", "--actions", "read,Write", "--pattern", "prod/*",
		"--expires", "2030-01-02T03:04:05+01:00")
	if code != 0 || out != "Granted READ,WRITE to ROLE/ops on pattern:prod/* (grant id g-1)\n" {
		t.Errorf("grant: code %d out %q err %q", code, out, errOut)
	}
	checkRequest(t, onlyRequest(t, reqs), "POST", "/v1/sys/grants",
		`{"principal_type":"ROLE","principal_id":"ops","actions":["READ","WRITE"],"pattern":"prod/*","expires_at":"2030-01-02T03:04:05+01:00"}`)

	code, out, _ = runCLI(env, "", "policy", "grant", "--principal", "USER/alice", "--actions", "READ", "--actions", "ROTATE",
		"--secret", "prod/db", "--expires", "24h", "-o", "json")
	var got struct {
		ID    string
		Grant struct {
			Actions   []string
			Secret    string
			ExpiresAt time.Time `json:"expires_at"`
		}
	}
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || got.ID != "g-1" || got.Grant.Secret != "prod/db" || len(got.Grant.Actions) != 2 {
		t.Fatalf("grant json: code %d out %s", code, out)
	}
	r := onlyRequest(t, reqs)
	var sent struct {
		Secret    string
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal(r.body, &sent); err != nil || sent.Secret != "prod/db" {
		t.Fatalf("grant body %s", r.body)
	}
	if d := time.Until(sent.ExpiresAt); d < 23*time.Hour || d > 25*time.Hour {
		t.Errorf("--expires 24h sent %v", sent.ExpiresAt)
	}

	code, out, _ = runCLI(env, "", "policy", "revoke", "g-1")
	if code != 0 || out != "Revoked grant g-1\n" {
		t.Errorf("revoke: code %d out %q", code, out)
	}
	checkRequest(t, onlyRequest(t, reqs), "DELETE", "/v1/sys/grants/g-1", "")

	code, out, _ = runCLI(env, "", "policy", "list", "--principal", "USER/alice")
	want := [][]string{{"ID", "PRINCIPAL", "ACTIONS", "ON", "EXPIRES"},
		{"g-1", "ROLE/ops", "READ,WRITE", "pattern:prod/*", "-"},
		{"g-2", "USER/alice", "READ", "secret:sec-9", "2030-01-02T03:04:05Z"}}
	if rows := tableRows(out); code != 0 || !equalRows(rows, want) {
		t.Errorf("list: code %d\n%s", code, out)
	}
	if r := onlyRequest(t, reqs); r.query != "principal_id=alice&principal_type=USER" {
		t.Errorf("list query %q", r.query)
	}
	if code, _, _ := runCLI(env, "", "policy", "list", "--principal", "service", "-o", "json"); code != 0 {
		t.Errorf("list by type: code %d", code)
	}
	if r := onlyRequest(t, reqs); r.query != "principal_type=SERVICE" {
		t.Errorf("list query %q", r.query)
	}
	if code, _, _ := runCLI(env, "", "policy", "list"); code != 0 {
		t.Errorf("list all: code %d", code)
	}
	if r := onlyRequest(t, reqs); r.query != "" {
		t.Errorf("list query %q", r.query)
	}

	grant := []string{"policy", "grant", "--principal", "USER/a", "--actions", "READ"}
	usageCases(t, env, reqs, []struct {
		args []string
		want string
	}{
		{append(grant, "--secret", "a", "--pattern", "b/*"), "exactly one of --secret and --pattern"},
		{grant, "exactly one of --secret and --pattern"},
		{[]string{"policy", "grant", "--principal", "USER/a", "--pattern", "p/*"}, "--actions is required"},
		{[]string{"policy", "grant", "--actions", "READ", "--pattern", "p/*"}, "--principal is required"},
		{[]string{"policy", "grant", "--principal", "alice", "--actions", "READ", "--pattern", "p/*"}, "principal must be TYPE/ID"},
		{[]string{"policy", "grant", "--principal", "USER/a", "--actions", "READ,LIST", "--pattern", "p/*"}, `"LIST" is not one of`},
		{append(grant, "--pattern", "p/*", "--expires", "tomorrow"), "--expires must be an RFC 3339 time"},
		{append(grant, "--pattern", "p/*", "--expires", "-1h"), "--expires must be"},
		{[]string{"policy", "list", "--principal", "GROUP/x"}, "principal must be TYPE/ID"},
		{[]string{"policy", "revoke"}, "missing ID"},
	})
}

func TestAppRoleCommands(t *testing.T) {
	addr, reqs := fakeServer(t, routes(map[string]any{
		"PUT /v1/sys/approles/web":            map[string]string{"role_id": "rid-1"},
		"POST /v1/sys/approles/web/secret-id": map[string]any{"secret_id": "sid_abc", "expires_at": "2026-01-02T03:04:05Z"},
		"POST /v1/sys/approles/old/secret-id": map[string]any{"secret_id": "sid_def", "expires_at": "0001-01-01T00:00:00Z"},
		"DELETE /v1/sys/approles/web":         map[string]bool{"deleted": true},
		"GET /v1/sys/approles": map[string]any{"approles": []map[string]any{
			{"name": "web", "role_id": "rid-1", "principal": "web-svc", "secret_id_ttl": int64(10 * time.Minute), "secret_id_uses": 3,
				"cidrs": []string{"10.0.0.0/8"}, "token_ttl": int64(15 * time.Minute), "token_max_ttl": int64(4 * time.Hour)},
			{"name": "old", "role_id": "rid-0", "principal": "batch"},
		}},
	}))
	env := identityEnv(addr)

	code, out, errOut := runCLI(env, "", "approle", "create", "web", "--principal", "web-svc", "--secret-id-ttl", "10m", "--secret-id-uses", "3",
		"--cidr", "10.0.0.0/8", "--cidr", "192.168.0.0/16,fd00::/8", "--token-ttl", "15m", "--token-max-ttl", "4h")
	if code != 0 || out != "Role ID: rid-1\n" {
		t.Errorf("create: code %d out %q err %q", code, out, errOut)
	}
	checkRequest(t, onlyRequest(t, reqs), "PUT", "/v1/sys/approles/web",
		`{"principal":"web-svc","secret_id_ttl":"10m","secret_id_uses":3,"cidrs":["10.0.0.0/8","192.168.0.0/16","fd00::/8"],"token_ttl":"15m","token_max_ttl":"4h"}`)
	code, out, _ = runCLI(env, "", "approle", "create", "web", "--principal", "web-svc", "-o", "json")
	if code != 0 || !strings.Contains(out, `"role_id": "rid-1"`) {
		t.Errorf("create json: code %d out %s", code, out)
	}
	checkRequest(t, onlyRequest(t, reqs), "PUT", "/v1/sys/approles/web", `{"principal":"web-svc"}`)

	// The secret id alone goes to stdout, so it can be piped; its expiry goes to stderr.
	code, out, errOut = runCLI(env, "", "approle", "secret-id", "web")
	if code != 0 || out != "sid_abc\n" || !strings.Contains(errOut, "expires 2026-01-02T03:04:05Z") {
		t.Errorf("secret-id: code %d out %q err %q", code, out, errOut)
	}
	checkRequest(t, onlyRequest(t, reqs), "POST", "/v1/sys/approles/web/secret-id", "")
	code, out, errOut = runCLI(env, "", "approle", "secret-id", "old")
	if code != 0 || out != "sid_def\n" || !strings.Contains(errOut, "never expires") {
		t.Errorf("secret-id without expiry: code %d out %q err %q", code, out, errOut)
	}
	code, out, _ = runCLI(env, "", "approle", "secret-id", "old", "-o", "json")
	if code != 0 || !strings.Contains(out, `"secret_id": "sid_def"`) || strings.Contains(out, "expires_at") {
		t.Errorf("secret-id json: code %d out %s", code, out)
	}
	*reqs = nil

	code, out, _ = runCLI(env, "", "approle", "list")
	want := [][]string{{"NAME", "ROLE-ID", "PRINCIPAL", "SECRET-ID-TTL", "USES", "CIDRS", "TOKEN-TTL", "TOKEN-MAX-TTL"},
		{"web", "rid-1", "web-svc", "10m0s", "3", "10.0.0.0/8", "15m0s", "4h0m0s"},
		{"old", "rid-0", "batch", "-", "-", "-", "-", "-"}}
	if rows := tableRows(out); code != 0 || !equalRows(rows, want) {
		t.Errorf("list: code %d\n%s", code, out)
	}
	code, out, _ = runCLI(env, "", "approle", "delete", "web")
	if code != 0 || out != "Deleted AppRole web\n" {
		t.Errorf("delete: code %d out %q", code, out)
	}
	*reqs = nil

	create := []string{"approle", "create", "web", "--principal", "p"}
	usageCases(t, env, reqs, []struct {
		args []string
		want string
	}{
		{[]string{"approle", "create", "web"}, "--principal is required"},
		{append(create, "--cidr", "10.0.0.1"), `"10.0.0.1" is not a CIDR`},
		{append(create, "--secret-id-ttl", "10"), "want a positive duration"},
		{append(create, "--token-ttl", "-5m"), "want a positive duration"},
		{append(create, "--secret-id-uses", "-1"), "--secret-id-uses must not be negative"},
		{[]string{"approle", "secret-id"}, "missing NAME"},
		{[]string{"approle", "delete", "a", "b"}, `unexpected argument "b"`},
	})
}

func TestJWTIssuerCommands(t *testing.T) {
	addr, reqs := okServer(t, map[string]bool{"ok": true})
	env := identityEnv(addr)
	cfg := filepath.Join(t.TempDir(), "issuer.json")
	if err := os.WriteFile(cfg, []byte("{\n  \"issuer\": \"https://issuer.example\",\n  \"audiences\": [\"keyward\"]\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := runCLI(env, "", "auth", "jwt", "set", "k8s", "--config-file", cfg, "--token-ttl", "15m")
	if code != 0 || out != "Configured JWT issuer k8s\n" {
		t.Errorf("set: code %d out %q err %q", code, out, errOut)
	}
	checkRequest(t, onlyRequest(t, reqs), "PUT", "/v1/sys/auth/jwt/k8s",
		`{"config":{"issuer":"https://issuer.example","audiences":["keyward"]},"token_ttl":"15m"}`)

	code, _, errOut = runCLI(env, `{"issuer":"i","audiences":["a"]}`, "auth", "jwt", "set", "k8s", "--config-file", "-", "--token-max-ttl", "2h")
	if code != 0 {
		t.Errorf("set from stdin: code %d err %q", code, errOut)
	}
	checkRequest(t, onlyRequest(t, reqs), "PUT", "/v1/sys/auth/jwt/k8s", `{"config":{"issuer":"i","audiences":["a"]},"token_max_ttl":"2h"}`)

	code, out, _ = runCLI(env, "", "auth", "jwt", "delete", "k8s", "-o", "json")
	if code != 0 || !strings.Contains(out, `"deleted": true`) {
		t.Errorf("delete: code %d out %q", code, out)
	}
	checkRequest(t, onlyRequest(t, reqs), "DELETE", "/v1/sys/auth/jwt/k8s", "")

	for _, stdin := range []string{`["not","an","object"]`, `null`, `{"issuer":`} {
		if code, _, errOut := runCLI(env, stdin, "auth", "jwt", "set", "k8s", "--config-file", "-"); code != 1 || !strings.Contains(errOut, "not a JSON object") {
			t.Errorf("config %s: code %d err %q", stdin, code, errOut)
		}
	}
	usageCases(t, env, reqs, []struct {
		args []string
		want string
	}{
		{[]string{"auth", "jwt", "set", "k8s"}, "--config-file is required"},
		{[]string{"auth", "jwt", "set", "k8s", "--config-file", cfg, "--token-ttl", "soon"}, "want a positive duration"},
		{[]string{"auth", "jwt", "delete"}, "missing NAME"},
		{[]string{"auth", "jwt"}, "Usage: keyward auth jwt <subcommand>"},
		{[]string{"auth"}, "Usage: keyward auth <method>"},
		{[]string{"auth", "oidc"}, `unknown auth method "oidc"`},
	})
	for _, args := range [][]string{{"auth", "--help"}, {"help", "auth"}, {"help", "auth", "jwt"}, {"help", "auth", "jwt", "set"}, {"auth", "jwt", "delete", "-h"}} {
		if code, out, _ := runCLI(nil, "", args...); code != 0 || !strings.HasPrefix(out, "Usage: keyward auth") {
			t.Errorf("%q: code %d out %q", args, code, out)
		}
	}
}
