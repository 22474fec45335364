package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/api/wire"
)

// seen is one request the fake server got.
type seen struct {
	method, path, query, auth string
	body                      []byte
}

// fakeServer answers every request with answer and records it.
func fakeServer(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) (string, *[]seen) {
	t.Helper()
	var reqs []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		reqs = append(reqs, seen{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, r.Header.Get("Authorization"), b})
		w.Header().Set("Content-Type", "application/json")
		answer(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &reqs
}

// reply answers with status and v as JSON.
func reply(status int, v any) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
}

// runCLI runs the command line in-process with env as the environment.
func runCLI(env map[string]string, stdin string, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	x := cli{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errOut,
		getenv: func(k string) string { return env[k] }}
	return x.run(args), out.String(), errOut.String()
}

func TestGetInterleavedFlags(t *testing.T) {
	v := "pa55\n"
	addr, reqs := fakeServer(t, reply(200, wire.SecretResponse{Path: "prod/x", Version: 3, Value: &v}))
	env := map[string]string{"KEYWARD_ADDR": addr, "KEYWARD_TOKEN": "envtok"}
	for _, args := range [][]string{
		{"secret", "get", "prod/x", "--state", "previous"},
		{"secret", "get", "--state", "PREVIOUS", "prod/x"},
	} {
		code, out, errOut := runCLI(env, "", args...)
		if code != 0 || out != v || errOut != "" {
			t.Fatalf("%q: code %d out %q err %q", args, code, out, errOut)
		}
	}
	code, out, _ := runCLI(env, "", "secret", "get", "prod/x", "-o", "json", "--version", "3", "--token", "flagtok")
	if code != 0 || !strings.Contains(out, `"value": "pa55\n"`) {
		t.Fatalf("json: code %d out %q", code, out)
	}
	want := []seen{
		{method: "GET", path: "/v1/secrets/prod/x", query: "state=PREVIOUS", auth: "Bearer envtok"},
		{method: "GET", path: "/v1/secrets/prod/x", query: "state=PREVIOUS", auth: "Bearer envtok"},
		{method: "GET", path: "/v1/secrets/prod/x", query: "version=3", auth: "Bearer flagtok"},
	}
	for i, w := range want {
		if g := (*reqs)[i]; g.method != w.method || g.path != w.path || g.query != w.query || g.auth != w.auth {
			t.Errorf("request %d = %+v, want %+v", i, g, w)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	addr, reqs := fakeServer(t, reply(500, nil))
	env := map[string]string{"KEYWARD_ADDR": addr}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{}, "Usage: keyward <command>"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"secret"}, "Usage: keyward secret <subcommand>"},
		{[]string{"secret", "frob"}, `unknown secret subcommand "frob"`},
		{[]string{"secret", "get"}, "error: missing PATH"},
		{[]string{"secret", "get", "a", "--version", "2", "--state", "CURRENT"}, "mutually exclusive"},
		{[]string{"secret", "get", "a", "--state", "NEWEST"}, "--state must be"},
		{[]string{"secret", "get", "a", "--version", "0"}, "invalid value"},
		{[]string{"secret", "get", "a", "b"}, `unexpected argument "b"`},
		{[]string{"secret", "put", "a", "s3cret"}, "never from an argument"},
		{[]string{"secret", "put", "a", "--cas", "x"}, "not a version number"},
		{[]string{"secret", "list", "--bogus"}, "flag provided but not defined"},
		{[]string{"secret", "versions", "a", "-o", "yaml"}, "-o must be text or json"},
		{[]string{"secret", "destroy", "a"}, "--versions is required"},
		{[]string{"secret", "destroy", "a", "--versions", "1,x"}, `"x" is not a version number`},
		{[]string{"secret", "restore", "a", "--addr", "ftp://h"}, "invalid server address"},
		{[]string{"version", "x"}, "unexpected argument"},
	} {
		code, _, errOut := runCLI(env, "v", tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: code %d, stderr %q, want %q", tc.args, code, errOut, tc.want)
		}
	}
	if len(*reqs) != 0 {
		t.Errorf("usage errors reached the server: %+v", *reqs)
	}
}

func TestHelp(t *testing.T) {
	for _, sc := range secretCommands() {
		for _, args := range [][]string{{"secret", sc.name, "--help"}, {"secret", sc.name, "x", "-h"}, {"help", "secret", sc.name}} {
			code, out, _ := runCLI(nil, "", args...)
			if code != 0 || !strings.HasPrefix(out, "Usage: keyward secret "+sc.name+" ") || !strings.Contains(out, "-addr") {
				t.Errorf("%q: code %d out %q", args, code, out)
			}
		}
	}
	for _, args := range [][]string{{"help"}, {"--help"}, {"secret", "--help"}, {"version"}} {
		if code, out, _ := runCLI(nil, "", args...); code != 0 || out == "" {
			t.Errorf("%q: code %d out %q", args, code, out)
		}
	}
}

func TestPutValueSources(t *testing.T) {
	addr, reqs := fakeServer(t, reply(200, wire.WriteResponse{Path: "a", Version: 7}))
	env := map[string]string{"KEYWARD_ADDR": addr}
	code, out, errOut := runCLI(env, "  line one\n\n", "secret", "put", "--cas", "0", "a", "--description", "")
	if code != 0 || out != "Wrote a version 7\n" {
		t.Fatalf("stdin put: code %d out %q err %q", code, out, errOut)
	}
	file := filepath.Join(t.TempDir(), "v.bin")
	if err := os.WriteFile(file, []byte{0xff, 0xfe, '\n'}, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI(env, "ignored", "secret", "put", "a", "--file", file, "-o", "json")
	if code != 0 || !strings.Contains(out, `"version": 7`) {
		t.Fatalf("file put: code %d out %q err %q", code, out, errOut)
	}
	if code, _, errOut = runCLI(env, "", "secret", "put", "a", "--file", file+".missing"); code != 1 || !strings.Contains(errOut, "no such file") {
		t.Errorf("missing file: code %d err %q", code, errOut)
	}
	if code, _, errOut = runCLI(env, strings.Repeat("x", wire.MaxValueBytes+1), "secret", "put", "a"); code != 1 || !strings.Contains(errOut, "limit") {
		t.Errorf("large value: code %d err %q", code, errOut)
	}
	want := []string{`{"value":"  line one\n\n","cas":0,"description":""}`, `{"value_base64":"//4K"}`}
	if len(*reqs) != len(want) {
		t.Fatalf("%d requests, want %d", len(*reqs), len(want))
	}
	for i, w := range want {
		if g := (*reqs)[i]; g.method != "PUT" || g.path != "/v1/secrets/a" || string(g.body) != w {
			t.Errorf("request %d = %s %s %s, want body %s", i, g.method, g.path, g.body, w)
		}
	}
}

func TestAPIErrorOutput(t *testing.T) {
	cur := uint64(4)
	addr, _ := fakeServer(t, reply(409, wire.ErrorResponse{Error: wire.Error{Code: "cas_mismatch",
		Message: "expected version 3, current version is 4", CurrentVersion: &cur}}))
	code, out, errOut := runCLI(map[string]string{"KEYWARD_ADDR": addr}, "v", "secret", "put", "a", "--cas", "3")
	want := "error: cas_mismatch: expected version 3, current version is 4 (current version 4)\n"
	if code != 1 || out != "" || errOut != want {
		t.Fatalf("code %d out %q err %q", code, out, errOut)
	}
}

func TestListAll(t *testing.T) {
	pages := map[string]wire.ListResponse{
		"":  {Secrets: []wire.SecretMeta{{Path: "p/a", CurrentVersion: 1}}, Next: "p/a"},
		"a": {Secrets: []wire.SecretMeta{{Path: "p/b", CurrentVersion: 2}}},
	}
	addr, reqs := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		reply(200, pages[strings.TrimPrefix(r.URL.Query().Get("after"), "p/")])(w, r)
	})
	env := map[string]string{"KEYWARD_ADDR": addr}
	code, out, errOut := runCLI(env, "", "secret", "list", "--all", "p/", "--limit", "1")
	if code != 0 || errOut != "" || !strings.Contains(out, "p/a   1") || !strings.Contains(out, "p/b   2") {
		t.Fatalf("code %d out %q err %q", code, out, errOut)
	}
	if q := (*reqs)[1].query; q != "after=p%2Fa&limit=1&prefix=p%2F" {
		t.Errorf("second page query = %q", q)
	}
	code, out, errOut = runCLI(env, "", "secret", "list", "p/")
	if code != 0 || strings.Contains(out, "p/b") || !strings.Contains(errOut, "--after p/a") {
		t.Errorf("one page: code %d out %q err %q", code, out, errOut)
	}
}

func TestVersionsAndRemoval(t *testing.T) {
	addr, reqs := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/v1/versions/"):
			reply(200, wire.VersionsResponse{Path: "a", Versions: []wire.VersionInfo{{Version: 2, State: "CURRENT"}, {Version: 1, State: "PREVIOUS", Destroyed: true}}})(w, r)
		case strings.HasPrefix(r.URL.Path, "/v1/destroy/"):
			reply(200, wire.DestroyResponse{Path: "a", Destroyed: []uint64{1}})(w, r)
		case strings.HasPrefix(r.URL.Path, "/v1/restore/"):
			reply(200, wire.RestoreResponse{Path: "a", Restored: true})(w, r)
		default:
			reply(200, wire.DeleteResponse{Path: "a", Deleted: true, Purged: r.URL.Query().Get("purge") == "true"})(w, r)
		}
	})
	env := map[string]string{"KEYWARD_ADDR": addr}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"versions", "a"}, "VERSION  STATE     CREATED  DESTROYED\n2        CURRENT   -        false\n1        PREVIOUS  -        true\n"},
		{[]string{"destroy", "a", "--versions", "1"}, "Destroyed a version(s) [1]\n"},
		{[]string{"delete", "--purge", "a"}, "Purged a\n"},
		{[]string{"delete", "a", "-o", "json"}, "{\n  \"path\": \"a\",\n  \"deleted\": true,\n  \"purged\": false\n}\n"},
		{[]string{"restore", "a"}, "Restored a\n"},
	} {
		code, out, errOut := runCLI(env, "", append([]string{"secret"}, tc.args...)...)
		if code != 0 || out != tc.want {
			t.Errorf("%q: code %d out %q err %q, want %q", tc.args, code, out, errOut, tc.want)
		}
	}
	if g := (*reqs)[1]; g.method != "POST" || string(g.body) != `{"versions":[1]}` {
		t.Errorf("destroy request = %+v", g)
	}
}
