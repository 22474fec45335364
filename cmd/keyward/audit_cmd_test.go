package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/api/client"
	"github.com/keyward/keyward/api/wire"
	"github.com/keyward/keyward/fsm"
	"github.com/keyward/keyward/store"
)

// auditPages serves GET /v1/sys/audit over records with Seq 1..n, honouring after and limit as
// the server does, and records the queries it got.
func auditPages(t *testing.T, n int) (string, *[]url.Values) {
	t.Helper()
	var queries []url.Values
	addr, _ := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		queries = append(queries, q)
		after, _ := strconv.Atoi(q.Get("after"))
		limit := 100
		if v := q.Get("limit"); v != "" {
			limit, _ = strconv.Atoi(v)
		}
		recs := []client.AuditRecord{}
		next := 0
		for s := after + 1; s <= n; s++ {
			if len(recs) == limit {
				next = s - 1
				break
			}
			recs = append(recs, client.AuditRecord{ID: fmt.Sprintf("r%d", s), Seq: uint64(s), PrincipalType: "USER", PrincipalID: "alice",
				Action: "READ", Path: "prod/db", IPAddress: "10.0.0.1", Success: s%2 == 1, Reason: map[bool]string{false: "forbidden"}[s%2 == 1],
				AccessedAt: time.Date(2026, 1, 2, 3, 4, s, 0, time.UTC).UnixNano()})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"records": recs, "next": next})
	})
	return addr, &queries
}

func TestAuditList(t *testing.T) {
	addr, queries := auditPages(t, 5)
	env := identityEnv(addr)

	code, out, errOut := runCLI(env, "", "audit", "list", "--limit", "2")
	want := [][]string{{"SEQ", "TIME", "PRINCIPAL", "ACTION", "PATH", "OUTCOME", "IP", "REASON"},
		{"1", "2026-01-02T03:04:01Z", "USER/alice", "READ", "prod/db", "success", "10.0.0.1", "-"},
		{"2", "2026-01-02T03:04:02Z", "USER/alice", "READ", "prod/db", "failure", "10.0.0.1", "forbidden"}}
	if rows := tableRows(out); code != 0 || !equalRows(rows, want) || errOut != "(more records follow: --after 2, or --all)\n" {
		t.Errorf("page: code %d err %q\n%s", code, errOut, out)
	}

	// --all follows the cursor; jsonl prints one record per line.
	*queries = nil
	code, out, errOut = runCLI(env, "", "audit", "list", "--all", "--limit", "2", "--format", "jsonl")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 0 || errOut != "" || len(lines) != 5 {
		t.Fatalf("all jsonl: code %d err %q\n%s", code, errOut, out)
	}
	for i, l := range lines {
		var r client.AuditRecord
		if err := json.Unmarshal([]byte(l), &r); err != nil || r.Seq != uint64(i+1) {
			t.Errorf("line %d: %q (%v)", i, l, err)
		}
	}
	var afters []string
	for _, q := range *queries {
		afters = append(afters, q.Get("after"))
	}
	if strings.Join(afters, ",") != ",2,4" {
		t.Errorf("cursors %q", afters)
	}

	code, out, _ = runCLI(env, "", "audit", "list", "--all", "-o", "json")
	var got struct {
		Records []client.AuditRecord
		Next    uint64
	}
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || len(got.Records) != 5 || got.Next != 0 {
		t.Errorf("all json: code %d out %s", code, out)
	}
	if q := (*queries)[len(*queries)-1]; q.Get("limit") != "1000" {
		t.Errorf("--all without --limit asked for %q per page", q.Get("limit"))
	}

	// Filters travel as the API names them.
	*queries = nil
	code, _, errOut = runCLI(env, "", "audit", "list", "--path", "prod/db", "--principal", "alice", "--action", "login",
		"--outcome", "failure", "--from", "2026-01-01T00:00:00+02:00", "--to", "1h", "--after", "7", "--format", "json")
	if code != 0 || len(*queries) != 1 {
		t.Fatalf("filters: code %d err %q", code, errOut)
	}
	q := (*queries)[0]
	to, err := time.Parse(time.RFC3339Nano, q.Get("to"))
	if q.Get("path") != "prod/db" || q.Get("principal") != "alice" || q.Get("action") != "LOGIN" || q.Get("outcome") != "failure" ||
		q.Get("from") != "2025-12-31T22:00:00Z" || q.Get("after") != "7" || q.Has("limit") || err != nil || time.Since(to) < 59*time.Minute || time.Since(to) > 61*time.Minute {
		t.Errorf("query %v", q)
	}

	*queries = nil
	usageCases(t, env, &[]seen{}, []struct {
		args []string
		want string
	}{
		{[]string{"audit", "list", "--format", "yaml"}, "--format must be table, json or jsonl"},
		{[]string{"audit", "list", "-o", "json", "--format", "jsonl"}, "-o json and --format jsonl disagree"},
		{[]string{"audit", "list", "--outcome", "denied"}, "--outcome must be success or failure"},
		{[]string{"audit", "list", "--limit", "1001"}, "--limit must be 1..1000"},
		{[]string{"audit", "list", "--from", "yesterday"}, "--from must be an RFC 3339 time"},
		{[]string{"audit", "list", "--to", "0s"}, "--to must be"},
		{[]string{"audit", "list", "--after", "-1"}, "invalid value"},
		{[]string{"audit", "list", "x"}, `unexpected argument "x"`},
	})
	if len(*queries) != 0 {
		t.Errorf("usage errors reached the server: %v", *queries)
	}

	// A server that repeats its cursor does not loop the client forever.
	addr, _ = fakeServer(t, reply(200, map[string]any{"records": []any{}, "next": 3}))
	if code, _, errOut := runCLI(identityEnv(addr), "", "audit", "list", "--all", "--after", "3"); code != 1 || !strings.Contains(errOut, "repeated the cursor 3") {
		t.Errorf("repeated cursor: code %d err %q", code, errOut)
	}
	addr, _ = fakeServer(t, reply(403, wire.ErrorResponse{Error: wire.Error{Code: "forbidden", Message: "admin rights needed"}}))
	if code, _, errOut := runCLI(identityEnv(addr), "", "audit", "list"); code != 1 || !strings.Contains(errOut, "error: forbidden: admin rights needed") {
		t.Errorf("forbidden: code %d err %q", code, errOut)
	}
}

// buildExport returns an audit export of batches batches of perBatch records each, chained
// with fsm.ChainHash, as the server writes it.
func buildExport(t *testing.T, batches, perBatch int) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	prev, seq := "", uint64(0)
	for b := uint64(1); b <= uint64(batches); b++ {
		var recs []fsm.AuditRecord
		for range perBatch {
			seq++
			recs = append(recs, fsm.AuditRecord{ID: fmt.Sprintf("r%d", seq), Seq: seq, Batch: b, NodeID: "n1", NodeSeq: seq,
				Path: "prod/db", PrincipalType: "USER", PrincipalID: "alice", AuthMethod: "userpass", Action: "READ",
				IPAddress: "10.0.0.1", Success: true, RequestID: fmt.Sprintf("req-%d", seq), AccessedAt: int64(seq) * 1e9})
		}
		batch := fsm.AuditBatch{Seq: b, First: recs[0].Seq, Last: seq, Prev: prev, Hash: fsm.ChainHash(prev, recs)}
		if err := enc.Encode(store.AuditExportLine{Batch: &batch}); err != nil {
			t.Fatal(err)
		}
		for i := range recs {
			if err := enc.Encode(store.AuditExportLine{Record: &recs[i]}); err != nil {
				t.Fatal(err)
			}
		}
		prev = batch.Hash
	}
	return buf.Bytes()
}

// editLine rewrites the export line holding marker with edit.
func editLine(t *testing.T, export []byte, marker string, edit func(string) string) []byte {
	t.Helper()
	lines := strings.SplitAfter(string(export), "\n")
	for i, l := range lines {
		if strings.Contains(l, marker) {
			lines[i] = edit(l)
			return []byte(strings.Join(lines, ""))
		}
	}
	t.Fatalf("no line holds %q", marker)
	return nil
}

func writeTemp(t *testing.T, name string, b []byte) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestAuditVerifyFile(t *testing.T) {
	// The check is local: the server named by the environment is never asked.
	addr, reqs := fakeServer(t, reply(500, nil))
	env := identityEnv(addr)
	good := buildExport(t, 3, 2)

	code, out, errOut := runCLI(env, "", "audit", "verify", "--file", writeTemp(t, "good.jsonl", good))
	if code != 0 || out != "OK: 3 batches, 6 records; the hash chain is intact\n" || errOut != "" {
		t.Errorf("good chain: code %d out %q err %q", code, out, errOut)
	}
	code, out, _ = runCLI(env, "", "audit", "verify", "--file", writeTemp(t, "good.jsonl", good), "-o", "json")
	var rep client.ChainReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep != (client.ChainReport{OK: true, Batches: 3, Records: 6}) {
		t.Errorf("good chain json: code %d out %s", code, out)
	}
	// With --audit-retention the chain starts at the first batch left: an export without the
	// oldest batches still verifies.
	pruned := []byte(strings.Join(strings.SplitAfter(string(good), "\n")[3:], ""))
	if code, out, _ := runCLI(env, "", "audit", "verify", "--file", writeTemp(t, "pruned.jsonl", pruned)); code != 0 || !strings.HasPrefix(out, "OK: 2 batches, 4 records") {
		t.Errorf("pruned export: code %d out %q", code, out)
	}
	// An empty log is a chain of nothing.
	if code, out, _ := runCLI(env, "", "audit", "verify", "--file", writeTemp(t, "empty.jsonl", nil)); code != 0 || !strings.HasPrefix(out, "OK: 0 batches, 0 records") {
		t.Errorf("empty export: code %d out %q", code, out)
	}

	// One changed field of one record breaks its batch, and the verdict names it.
	tampered := editLine(t, good, `"id":"r4"`, func(l string) string {
		return strings.Replace(l, `"principal_id":"alice"`, `"principal_id":"mallory"`, 1)
	})
	bad := writeTemp(t, "tampered.jsonl", tampered)
	code, out, errOut = runCLI(env, "", "audit", "verify", "--file", bad)
	if code != 1 || out != "BROKEN at batch 2: records do not hash to the batch hash (a record was changed)\n" || !strings.Contains(errOut, "batch 2") {
		t.Errorf("tampered: code %d out %q err %q", code, out, errOut)
	}
	code, out, _ = runCLI(env, "", "audit", "verify", "--file", bad, "-o", "json")
	rep = client.ChainReport{}
	if code != 1 || json.Unmarshal([]byte(out), &rep) != nil || rep.OK || rep.BrokenBatch != 2 || rep.Reason == "" {
		t.Errorf("tampered json: code %d out %s", code, out)
	}
	for _, tc := range []struct {
		name   string
		export []byte
		batch  string
	}{
		{"success flipped", editLine(t, good, `"id":"r1"`, func(l string) string { return strings.Replace(l, `"success":true`, `"success":false`, 1) }), "1"},
		{"record dropped", editLine(t, good, `"id":"r6"`, func(string) string { return "" }), "3"},
		{"batch header dropped", editLine(t, good, `"batch":{"seq":2`, func(string) string { return "" }), "1"},
		{"middle batch cut out", []byte(strings.Join(slices.Delete(strings.SplitAfter(string(good), "\n"), 3, 6), "")), "3"},
	} {
		code, out, _ := runCLI(env, "", "audit", "verify", "--file", writeTemp(t, "x.jsonl", tc.export))
		if code != 1 || !strings.HasPrefix(out, "BROKEN at batch "+tc.batch+": ") {
			t.Errorf("%s: code %d out %q", tc.name, code, out)
		}
	}

	// Files that are not an export as keyward writes it are refused outright.
	for _, tc := range []struct {
		name   string
		export []byte
		want   string
	}{
		{"not JSON", []byte("hello\n"), "line 1: not an audit export line"},
		{"unknown field", []byte(`{"batch":{"seq":1,"first":1,"last":1,"prev":"","hash":"","extra":1}}` + "\n"), "line 1: not an audit export line"},
		{"neither", []byte("{}\n"), "line 1: is not exactly one batch header, record or trailer"},
		{"two values", []byte(`{"batch":{"seq":1}} {"batch":{"seq":2}}` + "\n"), "line 1: holds more than one JSON value"},
		{"record first", good[bytes.IndexByte(good, '\n')+1:], "line 1: a record before any batch header"},
		{"re-encoded", editLine(t, good, `"id":"r3"`, func(l string) string { return strings.Replace(l, `"seq":3,`, `"seq": 3,`, 1) }), "line 5: differs from what keyward writes for it (batch 2)"},
		{"repeated name", editLine(t, good, `"id":"r3"`, func(l string) string {
			return strings.Replace(l, `"success":true`, `"success":false,"success":true`, 1)
		}), "line 5: differs"},
	} {
		code, out, errOut := runCLI(env, "", "audit", "verify", "--file", writeTemp(t, "x.jsonl", tc.export))
		if code != 1 || out != "" || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: code %d out %q err %q, want %q", tc.name, code, out, errOut, tc.want)
		}
	}
	if code, _, errOut := runCLI(env, "", "audit", "verify", "--file", filepath.Join(t.TempDir(), "none")); code != 1 || !strings.Contains(errOut, "no such file") {
		t.Errorf("missing file: code %d err %q", code, errOut)
	}
	if len(*reqs) != 0 {
		t.Errorf("verify --file asked the server: %+v", *reqs)
	}
}

func TestAuditVerifyOnline(t *testing.T) {
	addr, reqs := fakeServer(t, routes(map[string]any{"GET /v1/sys/audit/verify": map[string]any{"ok": true, "batches": 4, "records": 9}}))
	code, out, _ := runCLI(identityEnv(addr), "", "audit", "verify")
	if code != 0 || out != "OK: 4 batches, 9 records; the hash chain is intact\n" {
		t.Errorf("ok: code %d out %q", code, out)
	}
	if r := onlyRequest(t, reqs); r.auth != "Bearer envtok" {
		t.Errorf("auth %q", r.auth)
	}
	addr, _ = fakeServer(t, routes(map[string]any{"GET /v1/sys/audit/verify": map[string]any{"ok": false, "batches": 2, "records": 5,
		"broken_batch": 2, "reason": "link to the previous batch does not match"}}))
	code, out, errOut := runCLI(identityEnv(addr), "", "audit", "verify")
	if code != 1 || out != "BROKEN at batch 2: link to the previous batch does not match\n" || !strings.Contains(errOut, "does not verify") {
		t.Errorf("broken: code %d out %q err %q", code, out, errOut)
	}
}

func TestAuditExport(t *testing.T) {
	export := buildExport(t, 2, 3)
	var status int
	var body []byte
	addr, reqs := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/sys/audit/export" {
			w.WriteHeader(404)
			return
		}
		if status != 200 {
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(wire.ErrorResponse{Error: wire.Error{Code: "forbidden", Message: "admin rights needed"}})
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		_, _ = w.Write(body)
	})
	env := identityEnv(addr)
	dir := t.TempDir()
	file := filepath.Join(dir, "audit.jsonl")

	status, body = 200, export
	code, out, errOut := runCLI(env, "", "audit", "export", file)
	if code != 0 || out != fmt.Sprintf("Wrote 8 lines (%d bytes) of the audit log to %s\n", len(export), file) {
		t.Fatalf("export: code %d out %q err %q", code, out, errOut)
	}
	if r := onlyRequest(t, reqs); r.auth != "Bearer envtok" || r.method != "GET" {
		t.Errorf("request %+v", r)
	}
	got, err := os.ReadFile(file)
	if err != nil || !bytes.Equal(got, export) {
		t.Fatalf("file holds %q (%v)", got, err)
	}
	if st, _ := os.Stat(file); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	// What export wrote, verify --file takes.
	if code, out, _ := runCLI(env, "", "audit", "verify", "--file", file); code != 0 || !strings.HasPrefix(out, "OK: 2 batches, 6 records") {
		t.Errorf("verify the export: code %d out %q", code, out)
	}
	code, out, _ = runCLI(env, "", "audit", "export", file, "-o", "json")
	if code != 0 || !strings.Contains(out, `"lines": 8`) {
		t.Errorf("json: code %d out %s", code, out)
	}
	*reqs = nil

	// A failed export leaves the old file as it was and no temporary file.
	for _, tc := range []struct {
		status int
		body   []byte
		want   string
	}{
		{403, nil, "error: forbidden: admin rights needed"},
		{200, export[:len(export)-10], "cut short"},
	} {
		status, body = tc.status, tc.body
		code, _, errOut := runCLI(env, "", "audit", "export", file)
		if code != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("status %d: code %d err %q, want %q", tc.status, code, errOut, tc.want)
		}
		if got, _ := os.ReadFile(file); !bytes.Equal(got, export) {
			t.Errorf("status %d: the old export was changed", tc.status)
		}
		if _, err := os.Stat(file + ".tmp"); !os.IsNotExist(err) {
			t.Errorf("status %d: temporary file left: %v", tc.status, err)
		}
	}
	if code, _, errOut := runCLI(env, "", "audit", "export"); code != 2 || !strings.Contains(errOut, "missing FILE") {
		t.Errorf("no file: code %d err %q", code, errOut)
	}
}
