package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyward/keyward/api/wire"
	"github.com/keyward/keyward/cluster/clustertest"
	"github.com/keyward/keyward/internal/pgtest"
)

// TestCLIPostgresRotation runs the README's PostgreSQL rotation walkthrough through the real
// CLI, a dev server and a real PostgreSQL.
func TestCLIPostgresRotation(t *testing.T) {
	pg := pgtest.Start(t)
	pg.Exec(t, "CREATE ROLE app NOLOGIN", "CREATE ROLE app_blue LOGIN PASSWORD 'first-pw' IN ROLE app",
		"CREATE ROLE app_green NOLOGIN IN ROLE app")
	node := clustertest.StartDev(t, e2eBinary)
	adminJSON := fmt.Sprintf(`{"host":%q,"port":%d,"database":"postgres","username":%q,"password":%q,"sslmode":"disable"}`,
		pg.Host, pg.Port, pg.Admin, pg.Password)
	mustKW(t, node, []byte(adminJSON), "secret", "put", "prod/shop/db-admin")
	mustKW(t, node, []byte(`{"username":"app_blue","password":"first-pw"}`), "secret", "put", "prod/shop/db")
	out := mustKW(t, node, nil, "rotation", "set", "prod/shop/db", "--rotator", "postgres", "--schedule", "24h", "--grace", "2s",
		"--settings", `{"connection":"prod/shop/db-admin","roles":["app_blue","app_green"]}`)
	if !strings.Contains(out, "Rotator:     postgres") || !strings.Contains(out, "Grace:       2s") {
		t.Fatalf("rotation set printed:\n%s", out)
	}
	out = mustKW(t, node, nil, "rotation", "now", "prod/shop/db", "--wait", "60s")
	for _, step := range []string{"started", "pending", "applied", "tested", "promoted", "finished", "completed", "succeeded: version 2 is CURRENT"} {
		if !strings.Contains(out, step) {
			t.Fatalf("rotation now --wait printed no %q:\n%s", step, out)
		}
	}
	var cur struct{ Username, Password string }
	if err := json.Unmarshal([]byte(mustKW(t, node, nil, "secret", "get", "prod/shop/db")), &cur); err != nil || cur.Username != "app_green" {
		t.Fatalf("rotated value: %+v %v", cur.Username, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(ctx, pg.URLFor(cur.Username, cur.Password)); err != nil {
		t.Fatalf("new login: %v", err)
	} else {
		conn.Close(ctx)
	}
	if conn, err := pgx.Connect(ctx, pg.URLFor("app_blue", "first-pw")); err == nil {
		conn.Close(ctx)
		t.Fatal("the old login still works after the rotation completed")
	}
	if out := mustKW(t, node, nil, "rotation", "show", "prod/shop/db"); !strings.Contains(out, "#1 manual, step completed, succeeded") {
		t.Fatalf("rotation show:\n%s", out)
	}
	var h wire.RotationHistoryResponse
	if err := json.Unmarshal([]byte(mustKW(t, node, nil, "rotation", "history", "prod/shop/db", "-o", "json")), &h); err != nil ||
		len(h.Rotations) != 1 || h.Rotations[0].Outcome != "succeeded" || h.Rotations[0].NewVersion != 2 {
		t.Fatalf("history: %+v %v", h, err)
	}
	if out := mustKW(t, node, nil, "rotation", "history", "prod/shop/db"); !strings.Contains(out, "completed  succeeded") {
		t.Fatalf("history table:\n%s", out)
	}

	// Mistakes: usage errors exit 2, refused policies 1, and change nothing.
	if _, _, code := kw(t, node, nil, "rotation", "set", "prod/shop/db", "--rotator", "random"); code != 2 {
		t.Fatalf("set without --schedule: exit %d", code)
	}
	if _, errOut, code := kw(t, node, nil, "rotation", "set", "prod/shop/db", "--rotator", "random", "--schedule", "every day"); code != 1 || !strings.Contains(errOut, "invalid_argument") {
		t.Fatalf("bad schedule: exit %d %s", code, errOut)
	}
	if _, errOut, code := kw(t, node, nil, "rotation", "set", "prod/shop/db", "--rotator", "postgres", "--schedule", "1h",
		"--settings", `{"connection":"prod/shop/db-admin","roles":["app_blue"]}`); code != 1 || !strings.Contains(errOut, "two different login roles") {
		t.Fatalf("one role: exit %d %s", code, errOut)
	}
	if out := mustKW(t, node, nil, "rotation", "show", "prod/shop/db"); !strings.Contains(out, "Rotator:     postgres") {
		t.Fatalf("a refused set changed the policy:\n%s", out)
	}
	mustKW(t, node, nil, "rotation", "delete", "prod/shop/db")
	if _, errOut, code := kw(t, node, nil, "rotation", "show", "prod/shop/db"); code != 1 || !strings.Contains(errOut, "not_found") {
		t.Fatalf("show after delete: exit %d %s", code, errOut)
	}
}

// TestRotationAPIBadInput: each malformed rotation request gets its 4xx JSON error and
// changes neither the policy nor the secret.
func TestRotationAPIBadInput(t *testing.T) {
	node := clustertest.StartDev(t, e2eBinary)
	mustKW(t, node, []byte("v1"), "secret", "put", "app/key")
	mustKW(t, node, nil, "rotation", "set", "app/key", "--rotator", "random", "--schedule", "1h")
	do := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, node.URL()+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+node.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	_, before := do(http.MethodGet, "/v1/rotation/app/key", "")
	_, versionsBefore := do(http.MethodGet, "/v1/versions/app/key", "")
	cases := []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"PUT", "/v1/rotation/app/key", `{`, 400, "invalid_json"},
		{"PUT", "/v1/rotation/app/key", `{"schedule":"1h","rotator":"random","extra":1}`, 400, "invalid_json"},
		{"PUT", "/v1/rotation/app/key", `{"Schedule":"1h","rotator":"random"}`, 400, "invalid_json"},
		{"PUT", "/v1/rotation/app/key", `{"schedule":"1h","schedule":"2h","rotator":"random"}`, 400, "invalid_json"},
		{"PUT", "/v1/rotation/app/key", `{"schedule":"","rotator":"random"}`, 400, "invalid_argument"},
		{"PUT", "/v1/rotation/app/key", `{"schedule":"0s","rotator":"random"}`, 400, "invalid_argument"},
		{"PUT", "/v1/rotation/app/key", `{"schedule":"* * * *","rotator":"random"}`, 400, "invalid_argument"},
		{"PUT", "/v1/rotation/app/key", `{"schedule":"1h","rotator":"random","grace":"soon"}`, 400, "invalid_argument"},
		{"PUT", "/v1/rotation/app/key", `{"schedule":"1h","rotator":"random","grace":"-1s"}`, 400, "invalid_argument"},
		{"PUT", "/v1/rotation/app/key", `{"schedule":"1h","rotator":"random","grace":"9000h"}`, 400, "invalid_argument"},
		{"PUT", "/v1/rotation/app/key", `{"schedule":"1h","rotator":"ldap"}`, 400, "invalid_argument"},
		{"PUT", "/v1/rotation/app/key", `{"schedule":"1h","rotator":"random","settings":{"length":"long"}}`, 400, "invalid_argument"},
		{"PUT", "/v1/rotation/app/key", `{"schedule":"1h","rotator":"random","settings":[1]}`, 400, "invalid_argument"},
		{"PUT", "/v1/rotation/app/key", `{"schedule":"1h","rotator":"webhook","settings":{"url":"http://x","hmac_key":"bad//path"}}`, 400, "invalid_path"},
		{"PUT", "/v1/rotation/app//key", `{"schedule":"1h","rotator":"random"}`, 400, "invalid_path"},
		{"PUT", "/v1/rotation/app/nope", `{"schedule":"1h","rotator":"random"}`, 404, "not_found"},
		{"POST", "/v1/rotate/app/key?wait=forever", ``, 400, "invalid_argument"},
		{"POST", "/v1/rotate/app/key?wait=10m", ``, 400, "invalid_argument"},
		{"POST", "/v1/rotate/app/nope", ``, 404, "not_found"},
		{"GET", "/v1/rotation/app/nope", ``, 404, "not_found"},
		{"GET", "/v1/rotation-history/app/key?max_stale=x", ``, 400, "invalid_argument"},
		{"DELETE", "/v1/rotation/app/nope", ``, 404, "not_found"},
		{"PATCH", "/v1/rotation/app/key", ``, 405, "method_not_allowed"},
	}
	for _, c := range cases {
		status, body := do(c.method, c.path, c.body)
		var e wire.ErrorResponse
		if status != c.status || json.Unmarshal([]byte(body), &e) != nil || e.Error.Code != c.code {
			t.Errorf("%s %s %s: %d %s, want %d %s", c.method, c.path, c.body, status, body, c.status, c.code)
		}
	}
	if _, after := do(http.MethodGet, "/v1/rotation/app/key", ""); after != before {
		t.Fatalf("policy changed:\n%s\n%s", before, after)
	}
	if _, after := do(http.MethodGet, "/v1/versions/app/key", ""); after != versionsBefore {
		t.Fatalf("versions changed:\n%s\n%s", versionsBefore, after)
	}
}
