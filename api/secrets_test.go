package api_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/api/wire"
)

// TestAPIHappyPaths runs the documented success paths against one real node.
func TestAPIHappyPaths(t *testing.T) {
	_, c := newTestNode(t)

	t.Run("write read versions", func(t *testing.T) { testWriteReadVersions(t, c) })
	t.Run("list pagination", func(t *testing.T) { testListPagination(t, c) })
	t.Run("destroy", func(t *testing.T) { testDestroy(t, c) })
	t.Run("delete restore purge", func(t *testing.T) { testDeleteRestorePurge(t, c) })
	t.Run("binary value", func(t *testing.T) { testBinaryValue(t, c) })
	t.Run("retention", func(t *testing.T) { testRetention(t, c) })
	t.Run("health", func(t *testing.T) { testHealth(t, c) })
	t.Run("index header on reads", func(t *testing.T) { testIndexHeader(t, c) })
}

func testWriteReadVersions(t *testing.T, c *apiClient) {
	const p = "happy/db-password"
	start := time.Now().UTC()
	desc := "payments DB password"
	w1 := c.put(t, p, wire.PutRequest{Value: ptr("s3cr3t-1"), Description: &desc})
	w2 := c.putValue(t, p, "s3cr3t-2")
	// POST works too, with CAS.
	var w3 wire.WriteResponse
	c.ok(t, http.MethodPost, "/v1/secrets/"+p, "", mustJSON(t, wire.PutRequest{Value: ptr("s3cr3t-3"), CAS: ptr[uint64](2)}), &w3)

	for i, w := range []wire.WriteResponse{w1, w2, w3} {
		if w.Path != p || w.Version != uint64(i+1) || w.State != "CURRENT" || w.SecretID == "" || w.VersionID == "" {
			t.Errorf("write %d: %+v", i+1, w)
		}
		if w.CreatedAt.Before(start.Add(-time.Minute)) || w.CreatedAt.After(time.Now().Add(time.Minute)) {
			t.Errorf("write %d: created_at %v is not about now", i+1, w.CreatedAt)
		}
		if w.SecretID != w1.SecretID {
			t.Errorf("write %d: secret_id %s, first write had %s", i+1, w.SecretID, w1.SecretID)
		}
	}
	if w1.VersionID == w2.VersionID || w2.VersionID == w3.VersionID || w1.VersionID == w3.VersionID {
		t.Errorf("version ids repeat: %s %s %s", w1.VersionID, w2.VersionID, w3.VersionID)
	}

	for _, r := range []struct {
		query, value, state string
		version             uint64
	}{
		{"", "s3cr3t-3", "CURRENT", 3},
		{"state=CURRENT", "s3cr3t-3", "CURRENT", 3},
		{"state=PREVIOUS", "s3cr3t-2", "PREVIOUS", 2},
		{"state=DEPRECATED", "s3cr3t-1", "DEPRECATED", 1},
		{"state=previous", "s3cr3t-2", "PREVIOUS", 2},
		{"version=1", "s3cr3t-1", "DEPRECATED", 1},
		{"version=2", "s3cr3t-2", "PREVIOUS", 2},
		{"version=3", "s3cr3t-3", "CURRENT", 3},
	} {
		got, _ := c.get(t, p, r.query)
		if got.Path != p || got.Version != r.version || got.State != r.state || deref(got.Value) != r.value ||
			got.ValueBase64 != nil || got.SecretID != w1.SecretID {
			t.Errorf("read ?%s: %+v value %q, want version %d %s %q", r.query, got, deref(got.Value), r.version, r.state, r.value)
		}
	}
	got, _ := c.get(t, p, "version=2")
	if got.VersionID != w2.VersionID || !got.CreatedAt.Equal(w2.CreatedAt) {
		t.Errorf("read of version 2: id %s created %v, write said %s %v", got.VersionID, got.CreatedAt, w2.VersionID, w2.CreatedAt)
	}

	md := c.versions(t, p)
	if md.Path != p || md.SecretID != w1.SecretID || md.Description != desc || md.CurrentVersion != 3 ||
		!md.CreatedAt.Equal(w1.CreatedAt) {
		t.Errorf("versions: %+v", md)
	}
	wantStates := []string{"CURRENT", "PREVIOUS", "DEPRECATED"}
	if len(md.Versions) != 3 {
		t.Fatalf("versions: %d entries, want 3", len(md.Versions))
	}
	for i, v := range md.Versions {
		if v.Version != uint64(3-i) || v.State != wantStates[i] || v.Destroyed || !strings.HasPrefix(v.KMSKeyID, "local:") {
			t.Errorf("versions[%d] = %+v", i, v)
		}
	}
	if ids := []string{md.Versions[2].VersionID, md.Versions[1].VersionID, md.Versions[0].VersionID}; !slices.Equal(ids, []string{w1.VersionID, w2.VersionID, w3.VersionID}) {
		t.Errorf("version ids %v, writes returned %s %s %s", ids, w1.VersionID, w2.VersionID, w3.VersionID)
	}

	// A write without a description keeps the secret's description.
	if md := c.versions(t, p); md.Description != desc {
		t.Errorf("description %q after a write without one, want %q", md.Description, desc)
	}
}

func testListPagination(t *testing.T, c *apiClient) {
	var want []string
	for i := range 25 {
		p := fmt.Sprintf("page/s%02d", i)
		want = append(want, p)
		c.putValue(t, p, "v")
	}
	c.putValue(t, "pagf/outside", "v") // sorts right after the prefix: must not leak in
	c.putValue(t, "pag", "v")          // a prefix of the prefix: must not match

	var got []string
	after, pages := "", 0
	for {
		q := "prefix=page/&limit=10"
		if after != "" {
			q += "&after=" + after
		}
		l := c.list(t, q)
		pages++
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		wantLen := 10
		if pages == 3 {
			wantLen = 5
		}
		if len(l.Secrets) != wantLen {
			t.Errorf("page %d has %d secrets, want %d", pages, len(l.Secrets), wantLen)
		}
		for _, s := range l.Secrets {
			got = append(got, s.Path)
			if s.SecretID == "" || s.CurrentVersion != 1 || s.CreatedAt.IsZero() || s.UpdatedAt.IsZero() {
				t.Errorf("list entry %+v", s)
			}
		}
		if l.Next == "" {
			break
		}
		if len(l.Secrets) == 0 || l.Next != l.Secrets[len(l.Secrets)-1].Path {
			t.Errorf("page %d: next %q is not the last path listed", pages, l.Next)
		}
		after = l.Next
	}
	if pages != 3 || !slices.Equal(got, want) {
		t.Errorf("%d pages listed %q, want 3 pages of %q", pages, got, want)
	}

	// Default limit lists all 25 in one page without next; limit = remaining count has no next.
	if l := c.list(t, "prefix=page/"); len(l.Secrets) != 25 || l.Next != "" {
		t.Errorf("default limit: %d secrets, next %q", len(l.Secrets), l.Next)
	}
	if l := c.list(t, "prefix=page/&limit=5&after=page/s19"); len(l.Secrets) != 5 || l.Next != "" || l.Secrets[0].Path != "page/s20" {
		t.Errorf("last exact page: %+v", l)
	}
	if l := c.list(t, "prefix=page/&limit=1000"); len(l.Secrets) != 25 {
		t.Errorf("limit=1000: %d secrets", len(l.Secrets))
	}
	if l := c.list(t, "prefix=nothing-here/"); len(l.Secrets) != 0 || l.Next != "" {
		t.Errorf("empty prefix match: %+v", l)
	}
	// The JSON carries "secrets": [] rather than null for an empty page.
	if r := c.ok(t, http.MethodGet, "/v1/secrets", "prefix=nothing-here/", nil, nil); !bytes.Contains(r.body, []byte(`"secrets":[]`)) {
		t.Errorf("empty list body %s", r.body)
	}
	// Description shows in the listing.
	c.put(t, "page/s00", wire.PutRequest{Value: ptr("v2"), Description: ptr("first page entry")})
	if l := c.list(t, "prefix=page/s00&limit=1"); len(l.Secrets) != 1 || l.Secrets[0].Description != "first page entry" || l.Secrets[0].CurrentVersion != 2 ||
		!l.Secrets[0].UpdatedAt.After(l.Secrets[0].CreatedAt) {
		t.Errorf("listing after a second write: %+v", l)
	}
}

func testDestroy(t *testing.T, c *apiClient) {
	const p = "happy/destroy"
	for i := 1; i <= 4; i++ {
		c.putValue(t, p, "v"+strconv.Itoa(i))
	}
	var d wire.DestroyResponse
	c.ok(t, http.MethodPost, "/v1/destroy/"+p, "", []byte(`{"versions":[2,1,2]}`), &d)
	if d.Path != p || !slices.Equal(d.Destroyed, []uint64{1, 2}) {
		t.Errorf("destroy answered %+v, want path %s destroyed [1 2]", d, p)
	}
	for _, n := range []string{"1", "2"} {
		r := c.do(t, http.MethodGet, "/v1/secrets/"+p, "version="+n, nil)
		checkError(t, r, http.StatusGone, "version_destroyed")
	}
	// The newest deprecated version with a value is 2, which is gone; so is 1.
	checkError(t, c.do(t, http.MethodGet, "/v1/secrets/"+p, "state=DEPRECATED", nil), http.StatusNotFound, "not_found")
	if got, _ := c.get(t, p, "state=PREVIOUS"); got.Version != 3 || deref(got.Value) != "v3" {
		t.Errorf("PREVIOUS after destroy: %+v", got)
	}
	md := c.versions(t, p)
	for _, v := range md.Versions {
		if want := v.Version <= 2; v.Destroyed != want {
			t.Errorf("version %d destroyed=%v, want %v", v.Version, v.Destroyed, want)
		}
	}
	// Destroying PREVIOUS is allowed; destroying again reports it again and changes nothing.
	c.ok(t, http.MethodPost, "/v1/destroy/"+p, "", []byte(`{"versions":[3]}`), &d)
	checkError(t, c.do(t, http.MethodGet, "/v1/secrets/"+p, "state=PREVIOUS", nil), http.StatusGone, "version_destroyed")
	c.ok(t, http.MethodPost, "/v1/destroy/"+p, "", []byte(`{"versions":[1]}`), &d)
	if !slices.Equal(d.Destroyed, []uint64{1}) {
		t.Errorf("second destroy of 1 answered %v", d.Destroyed)
	}
	if got, _ := c.get(t, p, ""); got.Version != 4 || deref(got.Value) != "v4" {
		t.Errorf("CURRENT after destroys: %+v", got)
	}
	// A new write still works, and the old CURRENT (4) can now be destroyed.
	c.putValue(t, p, "v5")
	c.ok(t, http.MethodPost, "/v1/destroy/"+p, "", []byte(`{"versions":[4]}`), nil)
	checkError(t, c.do(t, http.MethodGet, "/v1/secrets/"+p, "version=4", nil), http.StatusGone, "version_destroyed")
}

func testDeleteRestorePurge(t *testing.T, c *apiClient) {
	const p = "happy/delete-me"
	w1 := c.putValue(t, p, "v1")
	c.putValue(t, p, "v2")

	var del wire.DeleteResponse
	c.ok(t, http.MethodDelete, "/v1/secrets/"+p, "", nil, &del)
	if del != (wire.DeleteResponse{Path: p, Deleted: true, Purged: false}) {
		t.Errorf("delete answered %+v", del)
	}
	checkError(t, c.do(t, http.MethodGet, "/v1/secrets/"+p, "", nil), http.StatusNotFound, "not_found")
	checkError(t, c.do(t, http.MethodGet, "/v1/secrets/"+p, "version=1", nil), http.StatusNotFound, "not_found")
	checkError(t, c.do(t, http.MethodGet, "/v1/versions/"+p, "", nil), http.StatusNotFound, "not_found")
	if l := c.list(t, "prefix="+p); len(l.Secrets) != 0 {
		t.Errorf("soft-deleted secret is listed: %+v", l.Secrets)
	}
	if l := c.list(t, "prefix=happy/"); slices.ContainsFunc(l.Secrets, func(s wire.SecretMeta) bool { return s.Path == p }) {
		t.Errorf("soft-deleted secret is listed under happy/")
	}
	// Writes and destroys on a soft-deleted secret: 409 secret_deleted (docs/API.md).
	checkError(t, c.do(t, http.MethodPut, "/v1/secrets/"+p, "", valueBody("v3")), http.StatusConflict, "secret_deleted")
	t.Run("destroy on soft-deleted secret", func(t *testing.T) {
		checkError(t, c.do(t, http.MethodPost, "/v1/destroy/"+p, "", []byte(`{"versions":[1]}`)), http.StatusConflict, "secret_deleted")
	})
	// A second soft delete finds no live secret.
	checkError(t, c.do(t, http.MethodDelete, "/v1/secrets/"+p, "", nil), http.StatusNotFound, "not_found")

	var rest wire.RestoreResponse
	c.ok(t, http.MethodPost, "/v1/restore/"+p, "", nil, &rest)
	if rest != (wire.RestoreResponse{Path: p, Restored: true}) {
		t.Errorf("restore answered %+v", rest)
	}
	if got, _ := c.get(t, p, ""); got.Version != 2 || deref(got.Value) != "v2" || got.SecretID != w1.SecretID {
		t.Errorf("after restore: %+v", got)
	}
	if got, _ := c.get(t, p, "version=1"); deref(got.Value) != "v1" {
		t.Errorf("version 1 after restore: %+v", got)
	}
	if l := c.list(t, "prefix="+p); len(l.Secrets) != 1 || l.Secrets[0].CurrentVersion != 2 {
		t.Errorf("restored secret listing: %+v", l.Secrets)
	}
	checkError(t, c.do(t, http.MethodPost, "/v1/restore/"+p, "", nil), http.StatusConflict, "not_deleted")

	// purge=false is an explicit soft delete; purge of a soft-deleted secret removes it.
	c.ok(t, http.MethodDelete, "/v1/secrets/"+p, "purge=false", nil, &del)
	if del.Purged || !del.Deleted {
		t.Errorf("purge=false answered %+v", del)
	}
	c.ok(t, http.MethodDelete, "/v1/secrets/"+p, "purge=true", nil, &del)
	if del != (wire.DeleteResponse{Path: p, Deleted: true, Purged: true}) {
		t.Errorf("purge answered %+v", del)
	}
	checkError(t, c.do(t, http.MethodPost, "/v1/restore/"+p, "", nil), http.StatusNotFound, "not_found")
	checkError(t, c.do(t, http.MethodGet, "/v1/versions/"+p, "", nil), http.StatusNotFound, "not_found")

	// The path is free again: a new secret starts at version 1 with a new id.
	w := c.put(t, p, wire.PutRequest{Value: ptr("fresh"), CAS: ptr[uint64](0)})
	if w.Version != 1 || w.SecretID == w1.SecretID {
		t.Errorf("re-created secret: %+v (old id %s)", w, w1.SecretID)
	}
	// Purge of a live secret.
	c.ok(t, http.MethodDelete, "/v1/secrets/"+p, "purge=true", nil, &del)
	checkError(t, c.do(t, http.MethodGet, "/v1/secrets/"+p, "", nil), http.StatusNotFound, "not_found")
}

func testBinaryValue(t *testing.T, c *apiClient) {
	const p = "happy/binary"
	bin := make([]byte, 256)
	for i := range bin {
		bin[i] = byte(255 - i)
	}
	b64 := base64.StdEncoding.EncodeToString(bin)
	c.put(t, p, wire.PutRequest{ValueBase64: &b64})
	got, r := c.get(t, p, "")
	if got.Value != nil || deref(got.ValueBase64) != b64 {
		t.Errorf("binary read: %s", r.body)
	}
	raw, err := base64.StdEncoding.DecodeString(deref(got.ValueBase64))
	if err != nil || !bytes.Equal(raw, bin) {
		t.Errorf("binary round trip: %v, %x", err, raw)
	}
	// A UTF-8 value sent as base64 comes back as "value".
	utf := "héllo ✓\n\t\"quoted\""
	c.put(t, p, wire.PutRequest{ValueBase64: ptr(base64.StdEncoding.EncodeToString([]byte(utf)))})
	got, r = c.get(t, p, "")
	if deref(got.Value) != utf || got.ValueBase64 != nil {
		t.Errorf("UTF-8 value sent as base64 read back as %s", r.body)
	}
	// The binary version is still binary.
	got, _ = c.get(t, p, "version=1")
	if deref(got.ValueBase64) != b64 {
		t.Errorf("version 1 reads %+v", got)
	}
	// A single zero byte is a value (1 byte), and a 64 KiB binary value fits.
	c.put(t, p, wire.PutRequest{ValueBase64: ptr("AA==")})
	if got, _ := c.get(t, p, ""); got.ValueBase64 != nil || deref(got.Value) != "\x00" {
		t.Errorf("zero byte reads %+v", got)
	}
	big := bytes.Repeat([]byte{0xff, 0x00}, wire.MaxValueBytes/2)
	c.put(t, p, wire.PutRequest{ValueBase64: ptr(base64.StdEncoding.EncodeToString(big))})
	if got, _ := c.get(t, p, ""); deref(got.ValueBase64) != base64.StdEncoding.EncodeToString(big) {
		t.Errorf("64 KiB binary value did not round-trip")
	}
}

func testRetention(t *testing.T, c *apiClient) {
	const p = "happy/retention"
	for i := 1; i <= 12; i++ {
		if w := c.putValue(t, p, "r"+strconv.Itoa(i)); w.Version != uint64(i) {
			t.Fatalf("write %d got version %d", i, w.Version)
		}
	}
	for _, n := range []string{"1", "2"} {
		checkError(t, c.do(t, http.MethodGet, "/v1/secrets/"+p, "version="+n, nil), http.StatusGone, "version_destroyed")
	}
	for i := 3; i <= 12; i++ {
		if got, _ := c.get(t, p, "version="+strconv.Itoa(i)); deref(got.Value) != "r"+strconv.Itoa(i) {
			t.Errorf("version %d reads %q", i, deref(got.Value))
		}
	}
	if got, _ := c.get(t, p, "state=DEPRECATED"); got.Version != 10 || got.State != "DEPRECATED" || deref(got.Value) != "r10" {
		t.Errorf("state=DEPRECATED: %+v", got)
	}
	if got, _ := c.get(t, p, "state=PREVIOUS"); got.Version != 11 {
		t.Errorf("state=PREVIOUS: version %d", got.Version)
	}
	md := c.versions(t, p)
	if len(md.Versions) != 12 || md.CurrentVersion != 12 {
		t.Fatalf("versions: %d entries, current %d", len(md.Versions), md.CurrentVersion)
	}
	current := 0
	for _, v := range md.Versions {
		if want := v.Version <= 2; v.Destroyed != want {
			t.Errorf("version %d destroyed=%v, want %v", v.Version, v.Destroyed, want)
		}
		if v.State == "CURRENT" {
			current++
		}
	}
	if current != 1 {
		t.Errorf("%d CURRENT versions", current)
	}
}

func testHealth(t *testing.T, c *apiClient) {
	var h wire.HealthResponse
	c.ok(t, http.MethodGet, "/v1/sys/health", "", nil, &h)
	if h.NodeID != "node1" || h.State != "Leader" || h.Leader != "node1" || h.Error != nil ||
		h.AppliedIndex == 0 || h.CommitIndex < h.AppliedIndex {
		t.Errorf("health %+v", h)
	}
	r := c.do(t, http.MethodHead, "/v1/sys/health", "", nil)
	if r.status != http.StatusOK || len(r.body) != 0 {
		t.Errorf("HEAD health: %d with %d body bytes", r.status, len(r.body))
	}
}

func testIndexHeader(t *testing.T, c *apiClient) {
	const p = "happy/index"
	wr := c.ok(t, http.MethodPut, "/v1/secrets/"+p, "", valueBody("x"), nil)
	wi, ok := wr.index()
	if !ok {
		t.Errorf("write has no %s: %v", wire.HeaderIndex, wr.header)
	}
	_, r := c.get(t, p, "")
	i1, ok := r.index()
	if !ok {
		t.Fatalf("read has no %s: %v", wire.HeaderIndex, r.header)
	}
	if i1 < wi {
		t.Errorf("read after a write answered index %d, the write committed at %d", i1, wi)
	}
	vr := c.ok(t, http.MethodGet, "/v1/versions/"+p, "", nil, nil)
	lr := c.ok(t, http.MethodGet, "/v1/secrets", "prefix="+p, nil, nil)
	i2, ok2 := vr.index()
	i3, ok3 := lr.index()
	if !ok2 || !ok3 || i2 != i1 || i3 != i1 {
		t.Errorf("index headers: read %d, versions %q, list %q", i1, vr.header.Get(wire.HeaderIndex), lr.header.Get(wire.HeaderIndex))
	}
	var h wire.HealthResponse
	c.ok(t, http.MethodGet, "/v1/sys/health", "", nil, &h)
	if h.AppliedIndex != i1 {
		t.Errorf("health applied_index %d, read index %d", h.AppliedIndex, i1)
	}
	// A later write moves the index forward.
	c.putValue(t, p, "y")
	_, r = c.get(t, p, "")
	if i4, _ := r.index(); i4 <= i1 {
		t.Errorf("index did not advance after a write: %d then %d", i1, i4)
	}
}
