package api_test

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/keyward/keyward/api/wire"
)

// badInputState is what the bad-input test compares before and after each case.
type badInputState struct {
	versions []byte   // body of GET /v1/versions/t/existing
	list     []byte   // body of GET /v1/secrets?prefix=
	paths    []string // the paths that list holds
	index    uint64   // X-Keyward-Index of the versions read
}

func readBadInputState(t *testing.T, c *apiClient) badInputState {
	t.Helper()
	v := c.ok(t, http.MethodGet, "/v1/versions/t/existing", "", nil, nil)
	idx, ok := v.index()
	if !ok {
		t.Fatalf("versions read has no numeric %s header: %q", wire.HeaderIndex, v.header.Get(wire.HeaderIndex))
	}
	var l wire.ListResponse
	lr := c.ok(t, http.MethodGet, "/v1/secrets", "prefix=", nil, &l)
	var paths []string
	for _, s := range l.Secrets {
		paths = append(paths, s.Path)
	}
	return badInputState{versions: v.body, list: lr.body, paths: paths, index: idx}
}

func compareBadInputState(t *testing.T, before, after badInputState, indexStep uint64) {
	t.Helper()
	if !bytes.Equal(before.versions, after.versions) {
		t.Errorf("GET /v1/versions/t/existing changed:\nbefore %s\nafter  %s", before.versions, after.versions)
	}
	if !slices.Equal(before.paths, after.paths) {
		t.Errorf("listed secrets changed: before %q, after %q", before.paths, after.paths)
	} else if !bytes.Equal(before.list, after.list) {
		t.Errorf("GET /v1/secrets?prefix= changed:\nbefore %s\nafter  %s", before.list, after.list)
	}
	if after.index != before.index+indexStep {
		t.Errorf("%s went from %d to %d, want +%d", wire.HeaderIndex, before.index, after.index, indexStep)
	}
}

// TestBadInputChangesNothing sends every class of bad input to a real node. Each gets its
// documented 4xx status and stable error code in the documented error shape, and afterwards
// t/existing's versions and the full listing are byte-identical.
//
// Requests refused before Raft leave X-Keyward-Index where it was. The few that only the
// replicated state machine can decide (CAS, destroying the CURRENT or an unknown version,
// restoring a live secret) are one rejected Raft entry: the index moves by exactly one (no
// retries), and nothing else changes. The index is documented as the Raft index the node has
// applied, and a rejected command is still an applied entry.
func TestBadInputChangesNothing(t *testing.T) {
	_, c := newTestNode(t)
	w1 := c.putValue(t, "t/existing", "one")
	w2 := c.putValue(t, "t/existing", "two")
	if w1.Version != 1 || w2.Version != 2 {
		t.Fatalf("setup: versions %d, %d", w1.Version, w2.Version)
	}
	// A soft-deleted secret, for the secret_deleted cases; it is not listed.
	c.putValue(t, "t/deleted", "gone")
	c.ok(t, http.MethodDelete, "/v1/secrets/t/deleted", "", nil, nil)

	big := strings.Repeat("a", wire.MaxValueBytes+1)
	overBody := `{"value":"` + strings.Repeat("a", wire.MaxBodyBytes) + `"}`
	overBodyWS := `{"value":"x"}` + strings.Repeat(" ", wire.MaxBodyBytes)
	path513 := "t/" + strings.Repeat("p", wire.MaxPathBytes+1-2)

	const (
		put = http.MethodPut
		get = http.MethodGet
		del = http.MethodDelete
	)
	type tc struct {
		name    string
		method  string
		path    string // raw request path, sent as is
		query   string
		body    string
		noBody  bool
		status  int
		code    string
		viaRaft bool    // decided by the FSM: one rejected log entry
		current *uint64 // cas_mismatch: the current_version to report
	}
	cases := []tc{
		// Malformed or wrongly shaped JSON.
		{name: "body not JSON", method: put, path: "/v1/secrets/t/existing", body: `value=x`, status: 400, code: "invalid_json"},
		{name: "body empty", method: put, path: "/v1/secrets/t/existing", body: ``, status: 400, code: "invalid_json"},
		{name: "no body", method: put, path: "/v1/secrets/t/new", noBody: true, status: 400, code: "invalid_json"},
		{name: "body truncated", method: put, path: "/v1/secrets/t/existing", body: `{"value":"x"`, status: 400, code: "invalid_json"},
		{name: "body JSON array", method: put, path: "/v1/secrets/t/existing", body: `[{"value":"x"}]`, status: 400, code: "invalid_json"},
		{name: "body JSON string", method: put, path: "/v1/secrets/t/new", body: `"x"`, status: 400, code: "invalid_json"},
		{name: "value is a number", method: put, path: "/v1/secrets/t/existing", body: `{"value": 5}`, status: 400, code: "invalid_json"},
		{name: "value is an object", method: put, path: "/v1/secrets/t/new", body: `{"value": {"a":"b"}}`, status: 400, code: "invalid_json"},
		{name: "cas is a string", method: put, path: "/v1/secrets/t/existing", body: `{"value":"x","cas":"2"}`, status: 400, code: "invalid_json"},
		{name: "cas is negative", method: put, path: "/v1/secrets/t/existing", body: `{"value":"x","cas":-1}`, status: 400, code: "invalid_json"},
		{name: "cas is fractional", method: put, path: "/v1/secrets/t/existing", body: `{"value":"x","cas":2.5}`, status: 400, code: "invalid_json"},
		{name: "description is a number", method: put, path: "/v1/secrets/t/existing", body: `{"value":"x","description":7}`, status: 400, code: "invalid_json"},
		{name: "unknown field", method: put, path: "/v1/secrets/t/existing", body: `{"value":"x","colour":1}`, status: 400, code: "invalid_json"},
		{name: "unknown field only", method: put, path: "/v1/secrets/t/new", body: `{"colour":1}`, status: 400, code: "invalid_json"},
		{name: "field name in wrong case", method: put, path: "/v1/secrets/t/fold", body: `{"Value":"x"}`, status: 400, code: "invalid_json"},
		{name: "two JSON values", method: put, path: "/v1/secrets/t/existing", body: `{"value":"x"}{"value":"y"}`, status: 400, code: "invalid_json"},
		{name: "trailing garbage", method: put, path: "/v1/secrets/t/existing", body: `{"value":"x"} x`, status: 400, code: "invalid_json"},

		// Missing or unusable values.
		{name: "no value", method: put, path: "/v1/secrets/t/existing", body: `{}`, status: 400, code: "invalid_value"},
		{name: "no value with cas", method: put, path: "/v1/secrets/t/existing", body: `{"cas":2}`, status: 400, code: "invalid_value"},
		{name: "empty value", method: put, path: "/v1/secrets/t/existing", body: `{"value":""}`, status: 400, code: "invalid_value"},
		{name: "empty value_base64", method: put, path: "/v1/secrets/t/new", body: `{"value_base64":""}`, status: 400, code: "invalid_value"},
		{name: "value and value_base64", method: put, path: "/v1/secrets/t/existing", body: `{"value":"x","value_base64":"eA=="}`, status: 400, code: "invalid_value"},
		{name: "bad base64", method: put, path: "/v1/secrets/t/existing", body: `{"value_base64":"!!!!"}`, status: 400, code: "invalid_value"},
		{name: "unpadded base64", method: put, path: "/v1/secrets/t/existing", body: `{"value_base64":"eA"}`, status: 400, code: "invalid_value"},
		{name: "url-safe base64", method: put, path: "/v1/secrets/t/existing", body: `{"value_base64":"-_-_"}`, status: 400, code: "invalid_value"},

		// Sizes.
		{name: "body over 1 MiB", method: put, path: "/v1/secrets/t/existing", body: overBody, status: 413, code: "too_large"},
		{name: "body over 1 MiB of trailing space", method: put, path: "/v1/secrets/t/existing", body: overBodyWS, status: 413, code: "too_large"},
		{name: "value 64 KiB + 1", method: put, path: "/v1/secrets/t/existing", body: `{"value":"` + big + `"}`, status: 413, code: "too_large"},
		{name: "value_base64 64 KiB + 1", method: put, path: "/v1/secrets/t/new", body: `{"value_base64":"` + base64.StdEncoding.EncodeToString([]byte(big)) + `"}`, status: 413, code: "too_large"},
		{name: "description over 1024 bytes", method: put, path: "/v1/secrets/t/existing", body: `{"value":"x","description":"` + strings.Repeat("d", wire.MaxDescBytes+1) + `"}`, status: 400, code: "invalid_argument"},

		// Invalid paths on a write (the body is fine).
		{name: "path empty", method: put, path: "/v1/secrets/", body: `{"value":"x"}`, status: 400, code: "invalid_path"},
		{name: "path double slash", method: put, path: "/v1/secrets/a//b", body: `{"value":"x"}`, status: 400, code: "invalid_path"},
		{name: "path leading slash", method: put, path: "/v1/secrets//a", body: `{"value":"x"}`, status: 400, code: "invalid_path"},
		{name: "path trailing slash", method: put, path: "/v1/secrets/a/", body: `{"value":"x"}`, status: 400, code: "invalid_path"},
		{name: "path dot segment", method: put, path: "/v1/secrets/a/./b", body: `{"value":"x"}`, status: 400, code: "invalid_path"},
		{name: "path dot-dot segment", method: put, path: "/v1/secrets/a/../b", body: `{"value":"x"}`, status: 400, code: "invalid_path"},
		{name: "path is dot-dot", method: put, path: "/v1/secrets/..", body: `{"value":"x"}`, status: 400, code: "invalid_path"},
		{name: "path is dot", method: put, path: "/v1/secrets/.", body: `{"value":"x"}`, status: 400, code: "invalid_path"},
		{name: "path escaped dot-dot", method: put, path: "/v1/secrets/t/%2e%2e", body: `{"value":"x"}`, status: 400, code: "invalid_path"},
		{name: "path with space", method: put, path: "/v1/secrets/t/a%20b", body: `{"value":"x"}`, status: 400, code: "invalid_path"},
		{name: "path with star", method: put, path: "/v1/secrets/t/a*b", body: `{"value":"x"}`, status: 400, code: "invalid_path"},
		{name: "path with escaped unicode", method: put, path: "/v1/secrets/t/caf%C3%A9", body: `{"value":"x"}`, status: 400, code: "invalid_path"},
		{name: "path with raw unicode", method: put, path: "/v1/secrets/t/café", body: `{"value":"x"}`, status: 400, code: "invalid_path"},
		{name: "path with colon", method: put, path: "/v1/secrets/t/a:b", body: `{"value":"x"}`, status: 400, code: "invalid_path"},
		{name: "path 513 bytes", method: put, path: "/v1/secrets/" + path513, body: `{"value":"x"}`, status: 400, code: "invalid_path"},
		{name: "path invalid via POST", method: http.MethodPost, path: "/v1/secrets/a//b", body: `{"value":"x"}`, status: 400, code: "invalid_path"},
		// Invalid paths on the other endpoints.
		{name: "read path dot-dot", method: get, path: "/v1/secrets/t/../existing", status: 400, code: "invalid_path"},
		{name: "read path empty", method: get, path: "/v1/secrets/", status: 400, code: "invalid_path"},
		{name: "versions path trailing slash", method: get, path: "/v1/versions/t/existing/", status: 400, code: "invalid_path"},
		{name: "delete path double slash", method: del, path: "/v1/secrets/t//existing", status: 400, code: "invalid_path"},
		{name: "delete purge path dot", method: del, path: "/v1/secrets/t/./existing", query: "purge=true", status: 400, code: "invalid_path"},
		{name: "destroy path dot-dot", method: http.MethodPost, path: "/v1/destroy/t/x/../existing", body: `{"versions":[1]}`, status: 400, code: "invalid_path"},
		{name: "restore path with space", method: http.MethodPost, path: "/v1/restore/t/a%20b", status: 400, code: "invalid_path"},

		// Reads: selectors.
		{name: "read version=0", method: get, path: "/v1/secrets/t/existing", query: "version=0", status: 400, code: "invalid_argument"},
		{name: "read version=abc", method: get, path: "/v1/secrets/t/existing", query: "version=abc", status: 400, code: "invalid_argument"},
		{name: "read version=-1", method: get, path: "/v1/secrets/t/existing", query: "version=-1", status: 400, code: "invalid_argument"},
		{name: "read version=99", method: get, path: "/v1/secrets/t/existing", query: "version=99", status: 404, code: "not_found"},
		{name: "read state=FOO", method: get, path: "/v1/secrets/t/existing", query: "state=FOO", status: 400, code: "invalid_argument"},
		{name: "read state=PENDING", method: get, path: "/v1/secrets/t/existing", query: "state=PENDING", status: 400, code: "invalid_argument"},
		{name: "read state=UNKNOWN", method: get, path: "/v1/secrets/t/existing", query: "state=UNKNOWN", status: 400, code: "invalid_argument"},
		{name: "read version and state", method: get, path: "/v1/secrets/t/existing", query: "version=1&state=CURRENT", status: 400, code: "invalid_argument"},
		{name: "read missing secret", method: get, path: "/v1/secrets/t/missing", status: 404, code: "not_found"},
		{name: "versions of missing secret", method: get, path: "/v1/versions/t/missing", status: 404, code: "not_found"},

		// Lists.
		{name: "list limit=0", method: get, path: "/v1/secrets", query: "prefix=&limit=0", status: 400, code: "invalid_argument"},
		{name: "list limit=1001", method: get, path: "/v1/secrets", query: "prefix=&limit=1001", status: 400, code: "invalid_argument"},
		{name: "list limit=abc", method: get, path: "/v1/secrets", query: "limit=abc", status: 400, code: "invalid_argument"},
		{name: "list limit=-1", method: get, path: "/v1/secrets", query: "limit=-1", status: 400, code: "invalid_argument"},
		{name: "list prefix over 512 bytes", method: get, path: "/v1/secrets", query: "prefix=" + strings.Repeat("p", wire.MaxPathBytes+1), status: 400, code: "invalid_argument"},

		// Destroy.
		{name: "destroy {}", method: http.MethodPost, path: "/v1/destroy/t/existing", body: `{}`, status: 400, code: "invalid_argument"},
		{name: "destroy no versions", method: http.MethodPost, path: "/v1/destroy/t/existing", body: `{"versions":[]}`, status: 400, code: "invalid_argument"},
		{name: "destroy version 0", method: http.MethodPost, path: "/v1/destroy/t/existing", body: `{"versions":[0]}`, status: 400, code: "invalid_argument"},
		{name: "destroy versions as strings", method: http.MethodPost, path: "/v1/destroy/t/existing", body: `{"versions":["1"]}`, status: 400, code: "invalid_json"},
		{name: "destroy negative version", method: http.MethodPost, path: "/v1/destroy/t/existing", body: `{"versions":[-1]}`, status: 400, code: "invalid_json"},
		{name: "destroy unknown field", method: http.MethodPost, path: "/v1/destroy/t/existing", body: `{"versions":[1],"force":true}`, status: 400, code: "invalid_json"},
		{name: "destroy body not JSON", method: http.MethodPost, path: "/v1/destroy/t/existing", body: `1,2`, status: 400, code: "invalid_json"},
		{name: "destroy CURRENT version", method: http.MethodPost, path: "/v1/destroy/t/existing", body: `{"versions":[2]}`, status: 409, code: "version_is_current", viaRaft: true},
		{name: "destroy unknown version", method: http.MethodPost, path: "/v1/destroy/t/existing", body: `{"versions":[99]}`, status: 404, code: "not_found", viaRaft: true},
		{name: "destroy valid and unknown version", method: http.MethodPost, path: "/v1/destroy/t/existing", body: `{"versions":[1,99]}`, status: 404, code: "not_found", viaRaft: true},
		{name: "destroy valid and CURRENT version", method: http.MethodPost, path: "/v1/destroy/t/existing", body: `{"versions":[1,2]}`, status: 409, code: "version_is_current", viaRaft: true},
		{name: "destroy of missing secret", method: http.MethodPost, path: "/v1/destroy/t/missing", body: `{"versions":[1]}`, status: 404, code: "not_found"},

		// Delete and restore.
		{name: "delete purge=maybe", method: del, path: "/v1/secrets/t/existing", query: "purge=maybe", status: 400, code: "invalid_argument"},
		{name: "delete missing secret", method: del, path: "/v1/secrets/t/missing", status: 404, code: "not_found"},
		{name: "purge missing secret", method: del, path: "/v1/secrets/t/missing", query: "purge=true", status: 404, code: "not_found"},
		{name: "restore live secret", method: http.MethodPost, path: "/v1/restore/t/existing", status: 409, code: "not_deleted", viaRaft: true},
		{name: "restore missing secret", method: http.MethodPost, path: "/v1/restore/t/missing", status: 404, code: "not_found"},

		// Check-and-set.
		{name: "cas behind", method: put, path: "/v1/secrets/t/existing", body: `{"value":"x","cas":1}`, status: 409, code: "cas_mismatch", viaRaft: true, current: ptr[uint64](2)},
		{name: "cas must-not-exist on existing", method: put, path: "/v1/secrets/t/existing", body: `{"value":"x","cas":0}`, status: 409, code: "cas_mismatch", viaRaft: true, current: ptr[uint64](2)},
		{name: "cas ahead", method: put, path: "/v1/secrets/t/existing", body: `{"value":"x","cas":3}`, status: 409, code: "cas_mismatch", viaRaft: true, current: ptr[uint64](2)},
		{name: "cas on missing secret", method: put, path: "/v1/secrets/t/never", body: `{"value":"x","cas":1}`, status: 409, code: "cas_mismatch", viaRaft: true, current: ptr[uint64](0)},

		// A soft-deleted secret.
		{name: "write to deleted secret", method: put, path: "/v1/secrets/t/deleted", body: `{"value":"x"}`, status: 409, code: "secret_deleted", viaRaft: true},
		{name: "cas write to deleted secret", method: put, path: "/v1/secrets/t/deleted", body: `{"value":"x","cas":1}`, status: 409, code: "secret_deleted", viaRaft: true},
		{name: "destroy on deleted secret", method: http.MethodPost, path: "/v1/destroy/t/deleted", body: `{"versions":[1]}`, status: 409, code: "secret_deleted"},
		{name: "read deleted secret", method: get, path: "/v1/secrets/t/deleted", status: 404, code: "not_found"},
		{name: "read version of deleted secret", method: get, path: "/v1/secrets/t/deleted", query: "version=1", status: 404, code: "not_found"},
		{name: "versions of deleted secret", method: get, path: "/v1/versions/t/deleted", status: 404, code: "not_found"},
		{name: "delete deleted secret", method: del, path: "/v1/secrets/t/deleted", status: 404, code: "not_found"},

		// Routing.
		{name: "unknown route", method: get, path: "/v1/nope", status: 404, code: "no_such_route"},
		{name: "unknown version prefix", method: get, path: "/v2/secrets/t/existing", status: 404, code: "no_such_route"},
		{name: "root", method: get, path: "/", status: 404, code: "no_such_route"},
		{name: "unknown sys route", method: get, path: "/v1/sys/nope", status: 404, code: "no_such_route"},
		{name: "PATCH a secret", method: http.MethodPatch, path: "/v1/secrets/t/existing", body: `{"value":"x"}`, status: 405, code: "method_not_allowed"},
		{name: "PUT versions", method: put, path: "/v1/versions/t/existing", body: `{"value":"x"}`, status: 405, code: "method_not_allowed"},
		{name: "GET destroy", method: get, path: "/v1/destroy/t/existing", status: 405, code: "method_not_allowed"},
		{name: "PUT destroy", method: put, path: "/v1/destroy/t/existing", body: `{"versions":[1]}`, status: 405, code: "method_not_allowed"},
		{name: "DELETE restore", method: del, path: "/v1/restore/t/existing", status: 405, code: "method_not_allowed"},
		{name: "DELETE list", method: del, path: "/v1/secrets", status: 405, code: "method_not_allowed"},
		{name: "POST health", method: http.MethodPost, path: "/v1/sys/health", status: 405, code: "method_not_allowed"},
	}

	first := readBadInputState(t, c)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := readBadInputState(t, c)
			var body []byte
			if !tc.noBody {
				body = []byte(tc.body)
			}
			r := c.do(t, tc.method, tc.path, tc.query, body)
			e := checkError(t, r, tc.status, tc.code)
			if tc.current != nil && (e.CurrentVersion == nil || *e.CurrentVersion != *tc.current) {
				t.Errorf("current_version %v, want %d", e.CurrentVersion, *tc.current)
			}
			var step uint64
			if tc.viaRaft {
				step = 1
			}
			compareBadInputState(t, before, readBadInputState(t, c), step)
		})
	}
	last := readBadInputState(t, c)
	compareBadInputState(t, first, last, last.index-first.index) // index checked per case

	// The values themselves still read back.
	for n, want := range map[string]string{"1": "one", "2": "two"} {
		got, _ := c.get(t, "t/existing", "version="+n)
		if got.Value == nil || *got.Value != want {
			t.Errorf("version %s reads %v, want %q", n, got.Value, want)
		}
	}

	// The soft-deleted secret kept its one version and value.
	c.ok(t, http.MethodPost, "/v1/restore/t/deleted", "", nil, nil)
	if md := c.versions(t, "t/deleted"); md.CurrentVersion != 1 || len(md.Versions) != 1 || md.Versions[0].Destroyed {
		t.Errorf("t/deleted after the table: %+v", md)
	}
	if got, _ := c.get(t, "t/deleted", ""); deref(got.Value) != "gone" {
		t.Errorf("t/deleted reads %q", deref(got.Value))
	}
	last = readBadInputState(t, c)

	// Boundaries that must succeed, on fresh paths, after the table.
	t.Run("value exactly 64 KiB", func(t *testing.T) {
		v := strings.Repeat("v", wire.MaxValueBytes)
		w := c.putValue(t, "t/big", v)
		got, _ := c.get(t, "t/big", "")
		if w.Version != 1 || got.Value == nil || *got.Value != v {
			t.Errorf("64 KiB value: version %d, read back %d bytes", w.Version, len(deref(got.Value)))
		}
	})
	t.Run("path exactly 512 bytes", func(t *testing.T) {
		p := "t/" + strings.Repeat("p", wire.MaxPathBytes-2)
		w := c.putValue(t, p, "x")
		got, _ := c.get(t, p, "")
		if w.Path != p || got.Path != p || deref(got.Value) != "x" {
			t.Errorf("512-byte path: wrote %q, read %q = %q", w.Path, got.Path, deref(got.Value))
		}
	})
	t.Run("description exactly 1024 bytes", func(t *testing.T) {
		d := strings.Repeat("d", wire.MaxDescBytes)
		c.put(t, "t/desc", wire.PutRequest{Value: ptr("x"), Description: &d})
		if md := c.versions(t, "t/desc"); md.Description != d {
			t.Errorf("description of %d bytes read back as %d bytes", len(d), len(md.Description))
		}
	})
	t.Run("boundary writes touched only their own paths", func(t *testing.T) {
		now := readBadInputState(t, c)
		if !bytes.Equal(now.versions, last.versions) {
			t.Errorf("t/existing changed:\nbefore %s\nafter  %s", last.versions, now.versions)
		}
		want := append(slices.Clone(last.paths), "t/big", "t/"+strings.Repeat("p", wire.MaxPathBytes-2), "t/desc")
		slices.Sort(want)
		if !slices.Equal(now.paths, want) {
			t.Errorf("listed %q, want %q", now.paths, want)
		}
	})
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
