package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/api/client"
	"github.com/keyward/keyward/api/wire"
	"github.com/keyward/keyward/cluster/clustertest"
)

// e2eBinary is the keyward binary built once for this package's end-to-end tests.
var e2eBinary string

func TestMain(m *testing.M) { os.Exit(clustertest.RunWithBinary(m, &e2eBinary)) }

// kw runs the keyward CLI as a real process against node and returns stdout, stderr and the
// exit code.
func kw(t *testing.T, node *clustertest.Process, stdin []byte, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(e2eBinary, args...)
	cmd.Env = append(os.Environ(), "KEYWARD_ADDR="+node.URL(), "KEYWARD_TOKEN="+node.Token)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run keyward %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

func mustKW(t *testing.T, node *clustertest.Process, stdin []byte, args ...string) string {
	t.Helper()
	out, errOut, code := kw(t, node, stdin, args...)
	if code != 0 {
		t.Fatalf("keyward %v: exit %d\nstdout: %s\nstderr: %s", args, code, out, errOut)
	}
	return out
}

// TestCLIWalkthrough drives the README's first steps through the real CLI and server.
func TestCLIWalkthrough(t *testing.T) {
	node := clustertest.StartDev(t, e2eBinary)
	const p = "prod/payments/db-password"

	mustKW(t, node, []byte("s3cr3t"), "secret", "put", p)
	if got := mustKW(t, node, nil, "secret", "get", p); got != "s3cr3t" {
		t.Fatalf("get = %q, want s3cr3t", got)
	}
	mustKW(t, node, []byte("n3w"), "secret", "put", p)
	if got := mustKW(t, node, nil, "secret", "get", p); got != "n3w" {
		t.Fatalf("get = %q, want n3w", got)
	}
	if got := mustKW(t, node, nil, "secret", "get", p, "--state", "PREVIOUS"); got != "s3cr3t" {
		t.Fatalf("get --state PREVIOUS = %q, want s3cr3t", got)
	}
	if got := mustKW(t, node, nil, "secret", "get", "--version", "1", p); got != "s3cr3t" {
		t.Fatalf("get --version 1 = %q", got)
	}
	versions := mustKW(t, node, nil, "secret", "versions", p)
	if !strings.Contains(versions, "CURRENT") || !strings.Contains(versions, "PREVIOUS") {
		t.Fatalf("versions output lacks states:\n%s", versions)
	}
	var vr wire.VersionsResponse
	if err := json.Unmarshal([]byte(mustKW(t, node, nil, "secret", "versions", p, "-o", "json")), &vr); err != nil {
		t.Fatal(err)
	}
	if vr.CurrentVersion != 2 || len(vr.Versions) != 2 || vr.Versions[0].State != "CURRENT" || vr.Versions[1].State != "PREVIOUS" {
		t.Fatalf("versions json = %+v", vr)
	}

	// Binary values and --file.
	bin := []byte{0, 1, 2, 0xff, 0xfe, '\n'}
	f := filepath.Join(t.TempDir(), "value")
	if err := os.WriteFile(f, bin, 0o600); err != nil {
		t.Fatal(err)
	}
	mustKW(t, node, nil, "secret", "put", "prod/bin", "--file", f)
	if got := mustKW(t, node, nil, "secret", "get", "prod/bin"); got != string(bin) {
		t.Fatalf("binary round trip = %x", got)
	}

	// Check-and-set: a stale expectation fails with exit 1 and names the actual version.
	_, errOut, code := kw(t, node, []byte("x"), "secret", "put", p, "--cas", "1")
	if code != 1 || !strings.Contains(errOut, "cas_mismatch") || !strings.Contains(errOut, "2") {
		t.Fatalf("cas mismatch: exit %d stderr %q", code, errOut)
	}
	mustKW(t, node, []byte("v3"), "secret", "put", p, "--cas", "2")

	list := mustKW(t, node, nil, "secret", "list", "prod/")
	if !strings.Contains(list, p) || !strings.Contains(list, "prod/bin") {
		t.Fatalf("list:\n%s", list)
	}

	// Destroy, delete, restore, purge.
	mustKW(t, node, nil, "secret", "destroy", p, "--versions", "1")
	if _, errOut, code := kw(t, node, nil, "secret", "get", p, "--version", "1"); code != 1 || !strings.Contains(errOut, "version_destroyed") {
		t.Fatalf("read destroyed: exit %d %q", code, errOut)
	}
	mustKW(t, node, nil, "secret", "delete", p)
	if _, errOut, code := kw(t, node, nil, "secret", "get", p); code != 1 || !strings.Contains(errOut, "not_found") {
		t.Fatalf("read deleted: exit %d %q", code, errOut)
	}
	if strings.Contains(mustKW(t, node, nil, "secret", "list", "prod/"), p) {
		t.Fatal("deleted secret still listed")
	}
	mustKW(t, node, nil, "secret", "restore", p)
	if got := mustKW(t, node, nil, "secret", "get", p); got != "v3" {
		t.Fatalf("after restore get = %q", got)
	}
	mustKW(t, node, nil, "secret", "delete", p, "--purge")
	if _, _, code := kw(t, node, nil, "secret", "versions", p); code != 1 {
		t.Fatalf("purged secret still has versions (exit %d)", code)
	}
	// The value is never accepted as an argument.
	if _, _, code := kw(t, node, nil, "secret", "put", "prod/arg", "s3cr3t"); code == 0 {
		t.Fatal("put accepted a value as an argument")
	}
}

// TestKillRestartKeepsAcknowledgedWrites writes concurrently, SIGKILLs the node, restarts it,
// and reads back every acknowledged write — through a snapshot and the log tail.
func TestKillRestartKeepsAcknowledgedWrites(t *testing.T) {
	node := clustertest.StartDev(t, e2eBinary)
	c, err := client.New(node.URL(), client.WithToken(node.Token))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	var mu sync.Mutex
	acked := map[string]string{} // path -> last acknowledged value
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				path := fmt.Sprintf("kill/w%d/s%d", w, i%10)
				val := fmt.Sprintf("value-%d-%d", w, i)
				if _, err := c.Put(ctx, path, []byte(val), client.PutOptions{}); err != nil {
					t.Errorf("put %s: %v", path, err)
					return
				}
				mu.Lock()
				acked[path] = val
				mu.Unlock()
			}
		}(w)
	}
	// Kill while a second wave of writes is in flight: those may or may not survive, but every
	// acknowledged one must.
	wg.Wait()
	forceSnapshot(t, node)
	inflight := make(chan struct{})
	go func() {
		defer close(inflight)
		for i := 0; ; i++ {
			path := fmt.Sprintf("kill/late/s%d", i)
			if _, err := c.Put(ctx, path, []byte("late"), client.PutOptions{}); err != nil {
				return
			}
			mu.Lock()
			acked[path] = "late"
			mu.Unlock()
		}
	}()
	waitFor(t, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) > 90
	})
	node.Kill()
	<-inflight

	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := node.WaitReady(rctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for path, want := range acked {
		got, err := c.Get(ctx, path, client.Selector{})
		if err != nil {
			t.Fatalf("after restart, get %s: %v", path, err)
		}
		if string(got.Value) != want {
			t.Fatalf("after restart, %s = %q, want %q", path, got.Value, want)
		}
	}
	t.Logf("%d acknowledged secrets read back after SIGKILL and restart", len(acked))
}

// TestNoPlaintextAtRest writes a random marker, forces a Raft snapshot, and scans every file
// under the data dir and all log output: the marker must not appear in any encoding.
func TestNoPlaintextAtRest(t *testing.T) {
	node := clustertest.StartDev(t, e2eBinary, "--log-level", "debug")
	c, err := client.New(node.URL(), client.WithToken(node.Token))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	marker := "MARKER-" + hex.EncodeToString(raw)
	for i := 0; i < 3; i++ {
		if _, err := c.Put(ctx, "scan/secret", []byte(marker), client.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Get(ctx, "scan/secret", client.Selector{}); err != nil {
		t.Fatal(err)
	}
	forceSnapshot(t, node)
	if _, err := c.Put(ctx, "scan/secret", []byte(marker), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	node.Stop()

	forms := map[string][]byte{
		"raw":    []byte(marker),
		"base64": []byte(base64.StdEncoding.EncodeToString([]byte(marker))[:40]),
		"hex":    []byte(hex.EncodeToString([]byte(marker))[:40]),
	}
	snapshots := 0
	err = filepath.WalkDir(node.DataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if strings.HasSuffix(path, "state.bin") {
			snapshots++
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for name, f := range forms {
			if bytes.Contains(b, f) {
				t.Errorf("%s form of the marker found in %s", name, path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if snapshots == 0 {
		t.Fatal("no Raft snapshot was written under the data dir")
	}
	logs := node.Logs()
	for name, f := range forms {
		if bytes.Contains(logs, f) {
			t.Errorf("%s form of the marker found in the process log", name)
		}
	}
}

// forceSnapshot makes the node take a Raft snapshot now.
func forceSnapshot(t *testing.T, node *clustertest.Process) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, node.URL()+"/v1/sys/raft/snapshot", nil)
	req.Header.Set("Authorization", "Bearer "+node.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("force snapshot: status %d", resp.StatusCode)
	}
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met before the deadline")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMakeRunScript drives scripts/cluster.sh (what `make run` and `make stop` call): three
// TLS nodes start, any node serves the CLI, and stop ends them.
func TestMakeRunScript(t *testing.T) {
	root, err := clustertest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	base := freeBase(t)
	env := append(os.Environ(), "KEYWARD_RUN_DIR="+t.TempDir(), "KEYWARD_BIN="+e2eBinary,
		"KEYWARD_BASE_PORT="+strconv.Itoa(base))
	script := func(arg string) string {
		cmd := exec.Command("bash", filepath.Join(root, "scripts", "cluster.sh"), arg)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("cluster.sh %s: %v\n%s", arg, err, out)
		}
		return string(out)
	}
	out := script("start")
	t.Cleanup(func() { script("stop") })
	m := regexp.MustCompile(`CA file: (\S+)`).FindStringSubmatch(out)
	tok := regexp.MustCompile(`KEYWARD_TOKEN=\$\(cat (\S+)\)`).FindStringSubmatch(out)
	if tok == nil {
		t.Fatalf("start output lacks the admin token file:\n%s", out)
	}
	token, err := os.ReadFile(tok[1])
	if err != nil {
		t.Fatal(err)
	}
	if m == nil || !strings.Contains(out, fmt.Sprintf("https://127.0.0.1:%d", base+20)) {
		t.Fatalf("start output lacks the CA file or addresses:\n%s", out)
	}
	cli := func(stdin string, args ...string) (string, int) {
		cmd := exec.Command(e2eBinary, args...)
		cmd.Env = append(os.Environ(), fmt.Sprintf("KEYWARD_ADDR=https://127.0.0.1:%d", base), "KEYWARD_CACERT="+m[1],
			"KEYWARD_TOKEN="+strings.TrimSpace(string(token)))
		cmd.Stdin = strings.NewReader(stdin)
		b, err := cmd.CombinedOutput()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		return string(b), code
	}
	if out, code := cli("s3cr3t", "secret", "put", "prod/db"); code != 0 {
		t.Fatalf("put: %s", out)
	}
	if out, code := cli("", "secret", "get", "prod/db", "--addr", fmt.Sprintf("https://127.0.0.1:%d", base+20)); code != 0 || out != "s3cr3t" {
		t.Fatalf("get from n3: %q exit %d", out, code)
	}
	if out, code := cli("", "cluster", "status"); code != 0 || !strings.Contains(out, "true") {
		t.Fatalf("cluster status: %s (exit %d)", out, code)
	}
	if out := script("stop"); !strings.Contains(out, "stopped") {
		t.Fatalf("stop: %s", out)
	}
	if out := script("status"); strings.Contains(out, "running") {
		t.Fatalf("nodes still running after stop:\n%s", out)
	}
}

// freeBase finds a base port whose ten following ports are free on 127.0.0.1.
func freeBase(t *testing.T) int {
	t.Helper()
	for try := 0; try < 50; try++ {
		base := 20000 + 100*int(time.Now().UnixNano()%400)
		ok := true
		for p := base; p < base+30 && ok; p++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				continue
			}
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
}

// TestAuditDirFlag: --audit-dir puts the node's local audit log where it says (a disk of its
// own), not under the data directory, and the node audits reads into it.
func TestAuditDirFlag(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "audit-disk")
	node := clustertest.StartDev(t, e2eBinary, "--audit-dir", dir)
	c, err := client.New(node.URL(), client.WithToken(node.Token))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.Put(ctx, "auditdir/secret", []byte("value"), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "auditdir/secret", client.Selector{}); err != nil {
		t.Fatal(err)
	}
	node.Stop()

	segs, err := filepath.Glob(filepath.Join(dir, "audit-*.log"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no audit segment in %s (err %v)", dir, err)
	}
	var read bool
	for _, s := range segs {
		b, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		read = read || bytes.Contains(b, []byte(`auditdir/secret`))
	}
	if !read {
		t.Errorf("the read of auditdir/secret is not in the audit log under %s", dir)
	}
	if _, err := os.Stat(filepath.Join(node.DataDir, "audit")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("audit directory under the data dir: stat err %v, want not found", err)
	}
}
