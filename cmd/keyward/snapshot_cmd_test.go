package main

import (
	"bytes"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/keyward/keyward/api/wire"
)

// snapshotServer serves GET /v1/sys/snapshot with snap (or fails with status, when set) and
// keeps the body of the last PUT.
type snapshotServer struct {
	url    string
	snap   []byte
	mu     sync.Mutex
	status int
	put    []byte
	forced int
}

func newSnapshotServer(t *testing.T, snap []byte) *snapshotServer {
	t.Helper()
	s := &snapshotServer{snap: snap}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		status := s.status
		s.mu.Unlock()
		if status != 0 {
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(wire.ErrorResponse{Error: wire.Error{Code: "invalid_snapshot", Message: "checksum mismatch"}})
			return
		}
		switch r.Method + " " + r.URL.Path {
		case "GET /v1/sys/snapshot":
			w.Header().Set("Content-Type", "application/octet-stream")
			_, _ = w.Write(s.snap)
		case "PUT /v1/sys/snapshot":
			b, _ := io.ReadAll(r.Body)
			s.mu.Lock()
			s.put = b
			s.mu.Unlock()
			_, _ = io.WriteString(w, `{"restored":true}`)
		case "POST /v1/sys/raft/snapshot":
			s.mu.Lock()
			s.forced++
			s.mu.Unlock()
			_, _ = io.WriteString(w, `{"snapshot":true}`)
		default:
			w.WriteHeader(404)
		}
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

func (s *snapshotServer) setStatus(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = status
}

func TestSnapshotSave(t *testing.T) {
	snap := make([]byte, 3<<20) // over the client's 2 MiB cap on JSON answers
	r := rand.New(rand.NewPCG(3, 4))
	for i := range snap {
		snap[i] = byte(r.Uint32())
	}
	s := newSnapshotServer(t, snap)
	env := map[string]string{"KEYWARD_ADDR": s.url}
	dir := t.TempDir()
	file := filepath.Join(dir, "backup.snap")

	// A left-over FILE.tmp is replaced, not written through.
	if err := os.WriteFile(file+".tmp", []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(env, "", "snapshot", "save", file)
	if code != 0 || out != "Wrote "+strconv.Itoa(len(snap))+" bytes to "+file+"\n" || errOut != "" {
		t.Fatalf("save: code %d out %q err %q", code, out, errOut)
	}
	got, err := os.ReadFile(file)
	if err != nil || !bytes.Equal(got, snap) {
		t.Fatalf("file holds %d bytes (%v), want the %d sent", len(got), err, len(snap))
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, %v; want 0600", st.Mode(), err)
	}
	if _, err := os.Stat(file + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("FILE.tmp left behind: %v", err)
	}

	code, out, _ = runCLI(env, "", "snapshot", "save", file, "-o", "json")
	var res struct {
		File  string
		Bytes int64
	}
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.File != file || res.Bytes != int64(len(snap)) {
		t.Errorf("json: code %d out %q", code, out)
	}

	// A failed save leaves an existing FILE alone and no FILE.tmp.
	s.setStatus(http.StatusServiceUnavailable)
	code, out, errOut = runCLI(env, "", "snapshot", "save", file)
	if code != 1 || out != "" || !strings.HasPrefix(errOut, "error: invalid_snapshot: ") {
		t.Errorf("failed save: code %d out %q err %q", code, out, errOut)
	}
	if got, _ := os.ReadFile(file); !bytes.Equal(got, snap) {
		t.Error("a failed save changed the existing file")
	}
	other := filepath.Join(dir, "new.snap")
	if code, _, _ := runCLI(env, "", "snapshot", "save", other); code != 1 {
		t.Errorf("failed save: code %d", code)
	}
	for _, f := range []string{other, other + ".tmp", file + ".tmp"} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s exists after a failed save: %v", f, err)
		}
	}

	// An unwritable destination fails cleanly.
	if code, _, errOut := runCLI(env, "", "snapshot", "save", filepath.Join(dir, "no", "such", "dir", "x.snap")); code != 1 || !strings.HasPrefix(errOut, "error: ") {
		t.Errorf("bad dir: code %d err %q", code, errOut)
	}
}

func TestSnapshotSaveRefusesEmpty(t *testing.T) {
	s := newSnapshotServer(t, nil)
	file := filepath.Join(t.TempDir(), "x.snap")
	code, _, errOut := runCLI(map[string]string{"KEYWARD_ADDR": s.url}, "", "snapshot", "save", file)
	if code != 1 || !strings.Contains(errOut, "empty snapshot") {
		t.Errorf("code %d err %q", code, errOut)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("empty snapshot saved: %v", err)
	}
}

func TestSnapshotRestoreAndForce(t *testing.T) {
	s := newSnapshotServer(t, nil)
	env := map[string]string{"KEYWARD_ADDR": s.url}
	dir := t.TempDir()
	file := filepath.Join(dir, "backup.snap")
	body := bytes.Repeat([]byte("snapshot bytes "), 200_000) // 3 MB
	if err := os.WriteFile(file, body, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(env, "", "snapshot", "restore", file)
	if code != 0 || out != "Restored the cluster from "+file+" ("+strconv.Itoa(len(body))+" bytes)\n" || errOut != "" {
		t.Fatalf("restore: code %d out %q err %q", code, out, errOut)
	}
	s.mu.Lock()
	put := s.put
	s.mu.Unlock()
	if !bytes.Equal(put, body) {
		t.Errorf("server got %d bytes, want %d", len(put), len(body))
	}

	for name, f := range map[string]string{"missing": filepath.Join(dir, "none"), "directory": dir} {
		if code, _, errOut := runCLI(env, "", "snapshot", "restore", f); code != 1 || !strings.HasPrefix(errOut, "error: ") {
			t.Errorf("%s: code %d err %q", name, code, errOut)
		}
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCLI(env, "", "snapshot", "restore", empty); code != 1 || !strings.Contains(errOut, "is empty") {
		t.Errorf("empty: code %d err %q", code, errOut)
	}

	if code, out, _ := runCLI(env, "", "snapshot", "force"); code != 0 || out != "Took a Raft snapshot\n" {
		t.Errorf("force: code %d out %q", code, out)
	}
	if code, out, _ := runCLI(env, "", "snapshot", "force", "-o", "json"); code != 0 || !strings.Contains(out, `"snapshot": true`) {
		t.Errorf("force json: code %d out %q", code, out)
	}
	s.mu.Lock()
	forced := s.forced
	s.mu.Unlock()
	if forced != 2 {
		t.Errorf("forced %d snapshots, want 2", forced)
	}

	s.setStatus(http.StatusBadRequest)
	if code, _, errOut := runCLI(env, "", "snapshot", "restore", file); code != 1 || errOut != "error: invalid_snapshot: checksum mismatch\n" {
		t.Errorf("rejected restore: code %d err %q", code, errOut)
	}
}
