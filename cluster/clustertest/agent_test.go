package clustertest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyward/keyward/api/client"
	"github.com/keyward/keyward/cluster/clustertest"
)

// lockedBuffer collects a process's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startAgent runs `keyward agent --config file` as a real process and returns it with its
// output; it is killed when the test ends.
func startAgent(t *testing.T, file string) (*exec.Cmd, *lockedBuffer, chan error) {
	t.Helper()
	out := &lockedBuffer{}
	cmd := exec.Command(binary, "agent", "--config", file)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	})
	return cmd, out, done
}

// unixHTTP is an HTTP client that reaches every URL through the Unix socket sock.
func unixHTTP(sock string) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}}
}

// agentSecret reads path from the agent's local endpoint.
func agentSecret(hc *http.Client, path string) (value string, stale bool, age float64, err error) {
	resp, err := hc.Get("http://agent/v1/secret/" + path)
	if err != nil {
		return "", false, 0, err
	}
	defer resp.Body.Close()
	var out struct {
		Value      string  `json:"value"`
		Stale      bool    `json:"stale"`
		AgeSeconds float64 `json:"age_seconds"`
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return "", false, 0, fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	}
	err = json.NewDecoder(resp.Body).Decode(&out)
	return out.Value, out.Stale, out.AgeSeconds, err
}

// waitFileContent polls until file holds want.
func waitFileContent(t *testing.T, file, want string, within time.Duration, logs fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		b, _ := os.ReadFile(file)
		if string(b) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %q, want %q after %s\nagent log:\n%s", file, b, want, within, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAgentRendersAndSurvivesOutage runs `keyward agent` as a real process against a real
// three-node TLS cluster, logging in with an AppRole whose tokens live 3 s: it renders the
// template (mode 0600), rewrites it within the TTL after a new version and runs the on-change
// command; with every node stopped the file keeps its content and the local endpoint keeps
// serving with a growing stale age and the alert metric; after a restart (and a re-login) a
// new version reaches the file. No value ever appears in the agent's log. SIGTERM stops it.
func TestAgentRendersAndSurvivesOutage(t *testing.T) {
	c := clustertest.StartCluster(t, binary, clustertest.Options{Voters: 3})
	ctx := ctxT(t, 180*time.Second)
	admin := c.Client(0)
	put := func(pw string) {
		t.Helper()
		if _, err := admin.Put(ctx, "app/db", []byte(`{"user":"app","password":"`+pw+`"}`), client.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	put("pw-one-4d1c")
	roleID, err := admin.PutAppRole(ctx, "agent", client.AppRoleRequest{Principal: "web-agent", TokenTTL: "3s", TokenMaxTTL: "5s"})
	if err != nil {
		t.Fatal(err)
	}
	sid, _, err := admin.MintSecretID(ctx, "agent")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Grant(ctx, client.GrantRequest{PrincipalType: "SERVICE", PrincipalID: "web-agent",
		Actions: []string{"READ"}, Pattern: "app/*"}); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	sidFile := filepath.Join(dir, "secret-id")
	if err := os.WriteFile(sidFile, []byte(sid+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(dir, "db.env")
	copied := filepath.Join(dir, "db.env.copy")
	sock := filepath.Join(dir, "agent.sock")
	var addrs []string
	for _, n := range c.Nodes {
		addrs = append(addrs, n.URL())
	}
	cp, err := exec.LookPath("cp")
	if err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{
		"addr":            strings.Join(addrs, ","),
		"tls":             map[string]any{"ca_file": c.CAFile},
		"auth":            map[string]any{"method": "approle", "role_id": roleID, "secret_id_file": sidFile},
		"cache":           map[string]any{"ttl": "2s", "stale_alert": "3s"},
		"render_interval": "200ms",
		"fetch_timeout":   "2s",
		"secrets":         []map[string]any{{"path": "app/db"}},
		"templates": []map[string]any{{
			"contents":    "DB_USER={{ secret \"app/db\" | field \"user\" }}\nDB_PASSWORD={{ secret \"app/db\" | field \"password\" }}\n",
			"destination": dest,
			"command":     []string{cp, dest, copied},
		}},
		"listen": map[string]any{"address": "unix:" + sock, "socket_mode": "0600"},
	}
	b, _ := json.Marshal(cfg)
	cfgFile := filepath.Join(dir, "agent.json")
	if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, logs, done := startAgent(t, cfgFile)
	want := func(pw string) string { return "DB_USER=app\nDB_PASSWORD=" + pw + "\n" }

	waitFileContent(t, dest, want("pw-one-4d1c"), 30*time.Second, logs)
	waitFileContent(t, copied, want("pw-one-4d1c"), 10*time.Second, logs)
	if fi, err := os.Stat(dest); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("rendered file mode: %v %v", fi.Mode(), err)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v", fi, err)
	}
	hc := unixHTTP(sock)
	if v, stale, _, err := agentSecret(hc, "app/db"); err != nil || stale || !strings.Contains(v, "pw-one-4d1c") {
		t.Fatalf("local endpoint: %q %v %v", v, stale, err)
	}

	// A new version reaches the file within the TTL (2 s) plus a render interval; measured
	// from the write's acknowledgement, with slack for a loaded machine.
	put("pw-two-93be")
	written := time.Now()
	waitFileContent(t, dest, want("pw-two-93be"), 20*time.Second, logs)
	t.Logf("new version rendered %s after the write", time.Since(written).Round(10*time.Millisecond))
	waitFileContent(t, copied, want("pw-two-93be"), 10*time.Second, logs)

	// Outage: every node stopped.
	for i := range c.Nodes {
		c.Kill(i)
	}
	var lastAge float64
	deadline := time.Now().Add(60 * time.Second)
	for {
		v, stale, age, err := agentSecret(hc, "app/db")
		if err != nil || !strings.Contains(v, "pw-two-93be") {
			t.Fatalf("local endpoint during the outage: %q %v\n%s", v, err, logs)
		}
		if b, _ := os.ReadFile(dest); string(b) != want("pw-two-93be") {
			t.Fatalf("rendered file changed during the outage: %q", b)
		}
		if stale && age < lastAge {
			t.Fatalf("stale age went back from %.3f to %.3f", lastAge, age)
		}
		if stale {
			lastAge = age
		}
		if stale && age > 6 && strings.Contains(scrapeAgent(t, hc), "keyward_client_cache_stale_alert 1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no stale serving with an alert (last age %.1f s)\n%s", lastAge, scrapeAgent(t, hc))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := os.Stat(copied); err != nil {
		t.Fatal(err)
	}

	// Recovery: the token expired meanwhile, so the agent logs in again.
	for i := range c.Nodes {
		c.Restart(i)
	}
	for i := range c.Nodes {
		if err := c.Nodes[i].WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.WaitForLeader(ctx); err != nil {
		t.Fatal(err)
	}
	put("pw-three-0a77")
	waitFileContent(t, dest, want("pw-three-0a77"), 30*time.Second, logs)
	waitFileContent(t, copied, want("pw-three-0a77"), 10*time.Second, logs)
	deadline = time.Now().Add(20 * time.Second)
	for {
		v, stale, _, err := agentSecret(hc, "app/db")
		if err == nil && !stale && strings.Contains(v, "pw-three-0a77") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("local endpoint after recovery: %q stale=%v %v", v, stale, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	m := scrapeAgent(t, hc)
	for _, want := range []string{"keyward_agent_renders_total 3", "keyward_agent_command_runs_total 3", "keyward_client_cache_stale_alert 0"} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q:\n%s", want, m)
		}
	}
	if !strings.Contains(m, "keyward_agent_logins_total") || strings.Contains(m, "keyward_agent_logins_total 1\n") {
		t.Errorf("expected more than one login (short token TTL, outage):\n%s", m)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("agent exit after SIGTERM: %v\n%s", err, logs)
		}
		done <- nil // for the cleanup
	case <-time.After(20 * time.Second):
		t.Fatalf("agent did not stop after SIGTERM\n%s", logs)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket file left after shutdown: %v", err)
	}
	for _, v := range []string{"pw-one-4d1c", "pw-two-93be", "pw-three-0a77", sid} {
		if strings.Contains(logs.String(), v) {
			t.Fatalf("the agent logged a secret value or credential %q:\n%s", v, logs)
		}
	}
}

func scrapeAgent(t *testing.T, hc *http.Client) string {
	t.Helper()
	resp, err := hc.Get("http://agent/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
