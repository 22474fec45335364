package main

import (
	"context"
	"encoding/base64"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/cluster"
	"github.com/keyward/keyward/fsm"
)

func TestOperatorKeygen(t *testing.T) {
	seen := map[string]bool{}
	for range 2 {
		code, out, errOut := runCLI(nil, "", "operator", "keygen")
		if code != 0 || errOut != "" || !strings.HasSuffix(out, "\n") {
			t.Fatalf("code %d out %q err %q", code, out, errOut)
		}
		key, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(out, "\n"))
		if err != nil || len(key) != 32 {
			t.Fatalf("key %q decodes to %d bytes (%v), want 32", out, len(key), err)
		}
		seen[out] = true
	}
	if len(seen) != 2 {
		t.Error("two keys were the same")
	}
}

// loopbackAddr returns a free loopback address (from a :0 listener, closed again).
func loopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// openTestNode opens a real cluster node on dir at addr.
func openTestNode(t *testing.T, dir, addr string, bootstrap bool) (*cluster.Node, *fsm.FSM) {
	t.Helper()
	f := fsm.New(nil)
	n, err := cluster.Open(cluster.Config{
		NodeID: "n1", DataDir: dir, RaftAddr: addr, Bootstrap: bootstrap, FSM: f,
		Noop: fsm.MustEncode(fsm.CmdNoop, fsm.Noop{}), Codec: fsm.Codec{},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n, f
}

// pollUntil polls cond until it holds or the deadline passes.
func pollUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not before the deadline", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func putSecret(t *testing.T, n *cluster.Node, path string) {
	t.Helper()
	cmd := fsm.MustEncode(fsm.CmdPutVersion, fsm.PutVersion{
		SecretID: "id-" + path, Path: path, Expect: 0, VersionID: "v1", Ciphertext: []byte("ct"),
		WrappedKey: []byte("wk"), KMSKeyID: "k", KMSProvider: "test", At: 1,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, _, err := n.Apply(ctx, cmd)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if res, ok := resp.(*fsm.Result); !ok || res.Err != nil {
		t.Fatalf("apply result: %+v", resp)
	}
}

func TestOperatorRecover(t *testing.T) {
	dir, oldAddr := t.TempDir(), loopbackAddr(t)
	n, _ := openTestNode(t, dir, oldAddr, true)
	putSecret(t, n, "app/db")
	if err := n.Snapshot(); err != nil {
		t.Fatal(err)
	}
	putSecret(t, n, "app/api") // after the snapshot: only in the log

	// While the node runs on the data dir, recover refuses (the Bolt lock) instead of hanging.
	newAddr := loopbackAddr(t)
	type result struct {
		code        int
		out, errOut string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errOut := runCLI(nil, "", "operator", "recover", "--data-dir", dir, "--node-id", "n1", "--raft-addr", newAddr)
		done <- result{code, out, errOut}
	}()
	select {
	case r := <-done:
		if r.code != 1 || !strings.HasPrefix(r.errOut, "error: ") || !strings.Contains(r.errOut, "still running") {
			t.Fatalf("recover of a running node: code %d out %q err %q", r.code, r.out, r.errOut)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("recover of a running node hung")
	}

	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(nil, "", "operator", "recover", "--data-dir", dir, "--node-id", "n1", "--raft-addr", newAddr)
	if code != 0 || errOut != "" {
		t.Fatalf("recover: code %d out %q err %q", code, out, errOut)
	}
	if !strings.Contains(out, "configuration is now [n1]") || !strings.Contains(out, "start the node with the same --node-id n1 and --raft-addr "+newAddr) ||
		!strings.Contains(out, "elect itself") {
		t.Errorf("recover output:\n%s", out)
	}

	// Started without Bootstrap on the new address, the node elects itself and has every write.
	n2, f2 := openTestNode(t, dir, newAddr, false)
	pollUntil(t, 20*time.Second, "leadership", n2.IsLeader)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	idx, err := n2.ReadIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pollUntil(t, 20*time.Second, "FSM catch-up", func() bool { return f2.AppliedIndex() >= idx })
	for _, p := range []string{"app/db", "app/api"} {
		if sec, ok := f2.State().SecretByPath(p); !ok || sec.CurrentVersion != 1 {
			t.Errorf("%s after recovery: %+v, %v", p, sec, ok)
		}
	}
	peers, err := n2.Peers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(peers) != 1 || peers[0].ID != "n1" || peers[0].Address != newAddr || !peers[0].Voter || !peers[0].Leader {
		t.Errorf("configuration after recovery: %+v, want n1 at %s alone", peers, newAddr)
	}
	// It still takes writes.
	putSecret(t, n2, "app/after")
}

func TestOperatorRecoverWithPeers(t *testing.T) {
	dir, addr := t.TempDir(), loopbackAddr(t)
	n, _ := openTestNode(t, dir, addr, true)
	putSecret(t, n, "a")
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(nil, "", "operator", "recover", "--data-dir", dir, "--node-id", "n1",
		"--raft-addr", addr, "--peer", "n2=127.0.0.1:9202", "--peer=n3=127.0.0.1:9203")
	if code != 0 || errOut != "" || !strings.Contains(out, "configuration is now [n1 n2 n3]") ||
		!strings.Contains(out, "n2=127.0.0.1:9202, n3=127.0.0.1:9203") {
		t.Fatalf("code %d out %q err %q", code, out, errOut)
	}
}

func TestOperatorRecoverUsage(t *testing.T) {
	dir := t.TempDir()
	base := []string{"operator", "recover", "--data-dir", dir, "--node-id", "n1", "--raft-addr", "127.0.0.1:8201"}
	for _, args := range [][]string{
		{"operator", "recover"},
		{"operator", "recover", "--node-id", "n1", "--raft-addr", "127.0.0.1:8201"},
		{"operator", "recover", "--data-dir", dir, "--raft-addr", "127.0.0.1:8201"},
		{"operator", "recover", "--data-dir", dir, "--node-id", "n1"},
		{"operator", "recover", "--data-dir", dir, "--node-id", "n1", "--raft-addr", "8201"},
		{"operator", "recover", "--data-dir", dir, "--node-id", "n1", "--raft-addr", "0.0.0.0:8201"},
		append(base, "--peer", "n2"),
		append(base, "--peer", "=127.0.0.1:1"),
		append(base, "--peer", "n2=nope"),
		append(base, "--peer", "n2=127.0.0.1:1", "--peer", "n2=127.0.0.1:2"),
		append(base, "--peer", "n1=127.0.0.1:1"),
		append(base, "--peer", "n2=127.0.0.1:8201"),
		append(base, "extra"),
		append(base, "--addr", "http://127.0.0.1:8200"),
		append(base, "-o", "json"),
	} {
		code, out, errOut := runCLI(nil, "", args...)
		if code != 2 || out != "" || !strings.HasPrefix(errOut, "error: ") {
			t.Errorf("%q: code %d out %q err %q", args, code, out, errOut)
		}
	}
	// A directory without Raft state is refused before anything is created in it.
	code, _, errOut := runCLI(nil, "", base...)
	if code != 1 || !strings.Contains(errOut, "no Raft state") {
		t.Errorf("empty data dir: code %d err %q", code, errOut)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("recover created %v in an empty data dir", entries)
	}
	if _, err := os.Stat(filepath.Join(dir, "raft")); !os.IsNotExist(err) {
		t.Errorf("raft dir: %v", err)
	}
}
