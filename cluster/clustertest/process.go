// Package clustertest runs real keyward server processes for tests: it builds the binary,
// starts nodes on free loopback ports, kills and restarts them, and keeps their logs.
package clustertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BuildBinary compiles ./cmd/keyward of the enclosing module into dir and returns its path.
func BuildBinary(dir string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "keyward")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/keyward")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, b)
	}
	return out, nil
}

// ModuleRoot walks up from the working directory to the directory holding go.mod.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// FreeAddr returns a loopback address with a port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Process is one keyward server process.
type Process struct {
	Binary   string
	Args     []string // arguments after "server"
	Env      []string // extra environment
	HTTPAddr string
	DataDir  string
	// Scheme is "http" (default) or "https"; HTTP is the client tests use to reach the node.
	Scheme string
	HTTP   *http.Client
	// Token is an admin token for the node's cluster (dev mode: its root token).
	Token string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	logs bytes.Buffer // everything the process wrote, across restarts
}

// Write appends process output to the log buffer.
func (p *Process) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.Write(b)
}

// Logs returns everything the process has written so far, across restarts.
func (p *Process) Logs() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.logs.Bytes())
}

// URL is the base URL of the node's HTTP API.
func (p *Process) URL() string {
	if p.Scheme != "" {
		return p.Scheme + "://" + p.HTTPAddr
	}
	return "http://" + p.HTTPAddr
}

// Start launches the process; it does not wait for it to be ready.
func (p *Process) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return errors.New("clustertest: process already running")
	}
	cmd := exec.Command(p.Binary, append([]string{"server"}, p.Args...)...)
	cmd.Env = append(os.Environ(), p.Env...)
	cmd.Stdout = p
	cmd.Stderr = p
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.Binary, err)
	}
	p.cmd = cmd
	p.done = make(chan struct{})
	go func(done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(p.done)
	return nil
}

// Running reports whether the process is alive.
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL and waits for the process to exit.
func (p *Process) Kill() { p.signal(syscall.SIGKILL) }

// Stop sends SIGTERM and waits for the process to exit (SIGKILL after 10 seconds).
func (p *Process) Stop() { p.signal(syscall.SIGTERM) }

func (p *Process) signal(sig syscall.Signal) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// WaitReady polls /v1/sys/health until the node knows a leader (200 or 429) or ctx ends.
func (p *Process) WaitReady(ctx context.Context) error {
	client := p.HTTP
	if client == nil {
		client = &http.Client{Timeout: time.Second}
	}
	for {
		if !p.Running() {
			return fmt.Errorf("clustertest: process exited; logs:\n%s", p.Logs())
		}
		resp, err := client.Get(p.URL() + "/v1/sys/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusTooManyRequests {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("clustertest: %s not ready: %w; logs:\n%s", p.HTTPAddr, ctx.Err(), p.Logs())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// StartDev starts a single dev-mode node of binary on free ports with a data dir under
// t.TempDir() and a known root token (p.Token), waits until it is ready and initialized, and
// kills it when the test ends.
func StartDev(t testing.TB, binary string, extra ...string) *Process {
	t.Helper()
	p := &Process{Binary: binary, HTTPAddr: FreeAddr(t), DataDir: filepath.Join(t.TempDir(), "data"), Token: "dev-root-token-for-tests"}
	p.Args = append([]string{"--dev", "--node-id", "n1", "--data-dir", p.DataDir, "--dev-root-token", p.Token,
		"--http-addr", p.HTTPAddr, "--raft-addr", FreeAddr(t)}, extra...)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitInitialized(ctx); err != nil {
		t.Fatal(err)
	}
	return p
}

// WaitInitialized polls GET /v1/sys/init until the cluster reports it is initialized.
func (p *Process) WaitInitialized(ctx context.Context) error {
	client := p.HTTP
	if client == nil {
		client = &http.Client{Timeout: time.Second}
	}
	for {
		resp, err := client.Get(p.URL() + "/v1/sys/init")
		if err == nil {
			var st struct {
				Initialized bool `json:"initialized"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if st.Initialized {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("clustertest: %s never initialized: %w; logs:\n%s", p.HTTPAddr, ctx.Err(), p.Logs())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// RunWithBinary is a TestMain body for packages that run the keyward binary: it builds the
// binary into a temporary directory, stores its path in *bin, runs the tests and cleans up.
// It returns the exit code for os.Exit.
func RunWithBinary(m *testing.M, bin *string) int {
	dir, err := os.MkdirTemp("", "keyward-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if *bin, err = BuildBinary(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}
