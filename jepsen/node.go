package jepsen

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/keyward/keyward/api/client"
	"github.com/keyward/keyward/api/wire"
	"github.com/keyward/keyward/cluster/certs"
)

// Node is one keyward server process on its host.
type Node struct {
	Index int
	ID    string
	Addrs Addrs
	nw    Network
	bin   string
	args  []string
	env   []string
	log   *os.File

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// URL is the node's API base URL.
func (n *Node) URL() string { return "https://" + n.Addrs.HTTP }

// Start launches the process (it must not be running).
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return fmt.Errorf("jepsen: node %s already running", n.ID)
	}
	cmd := n.nw.Command(n.Index, n.bin, append([]string{"server"}, n.args...)...)
	cmd.Env = append(os.Environ(), n.env...)
	cmd.Stdout, cmd.Stderr = n.log, n.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	fmt.Fprintf(n.log, "=== jepsen: start %s at %s\n", n.ID, time.Now().UTC().Format(time.RFC3339Nano))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("jepsen: start %s: %w", n.ID, err)
	}
	n.cmd, n.done = cmd, make(chan struct{})
	n.nw.Attach(n.Index, cmd.Process.Pid)
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(n.done)
	return nil
}

// Running reports whether the process is alive (paused counts as alive).
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL and waits for the process to end.
func (n *Node) Kill() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	fmt.Fprintf(n.log, "=== jepsen: kill -9 %s at %s\n", n.ID, time.Now().UTC().Format(time.RFC3339Nano))
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Process.Kill()
	<-done
}

// Pause stops the process with SIGSTOP; Resume continues it.
func (n *Node) Pause() error { return n.signal(syscall.SIGSTOP) }

// Resume continues a paused process with SIGCONT.
func (n *Node) Resume() error { return n.signal(syscall.SIGCONT) }

func (n *Node) signal(sig syscall.Signal) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return fmt.Errorf("jepsen: node %s not running", n.ID)
	}
	return n.cmd.Process.Signal(sig)
}

// Cluster is the set of nodes of one run, with its CA and admin token.
type Cluster struct {
	Nodes  []*Node
	Dir    string
	CAFile string
	TLS    *tls.Config
	Token  string
	http   *http.Client
}

// StartCluster creates certificates, starts n nodes with TLS, gossip encryption, a shared KEK
// file and audit (always on), waits for a leader and initializes the cluster.
func StartCluster(ctx context.Context, nw Network, bin, dir string, n int) (*Cluster, error) {
	c := &Cluster{Dir: dir}
	tlsDir := filepath.Join(dir, "tls")
	if err := os.MkdirAll(tlsDir, 0o700); err != nil {
		return nil, err
	}
	ca, caKey, err := certs.CreateCA(tlsDir, "ca", "keyward jepsen CA", 48*time.Hour)
	if err != nil {
		return nil, err
	}
	c.CAFile = ca
	if c.TLS, err = certs.ClientTLS(ca, "", ""); err != nil {
		return nil, err
	}
	c.http = &http.Client{Timeout: 2 * time.Second, Transport: client.NewTransport(c.TLS)}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	gossipKey := base64.StdEncoding.EncodeToString(key)
	var join []string
	for i := 0; i < n; i++ {
		join = append(join, nw.Addrs(i).RaftAdvertise)
	}
	for i := 0; i < n; i++ {
		a := nw.Addrs(i)
		id := "n" + strconv.Itoa(i+1)
		cert, certKey, err := certs.CreateCert(certs.CertRequest{CACert: ca, CAKey: caKey, Dir: tlsDir, Name: id,
			CommonName: id, IPs: []net.IP{net.ParseIP(a.IP)}, Validity: 48 * time.Hour})
		if err != nil {
			return nil, err
		}
		logf, err := os.OpenFile(filepath.Join(dir, "logs", id+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, err
		}
		node := &Node{Index: i, ID: id, Addrs: a, nw: nw, bin: bin, log: logf,
			env: []string{"KEYWARD_GOSSIP_KEY=" + gossipKey},
			args: []string{"--node-id", id, "--data-dir", filepath.Join(dir, "data", id),
				"--http-addr", a.HTTP, "--raft-addr", a.RaftBind, "--advertise-raft", a.RaftAdvertise,
				"--gossip-addr", a.Gossip, "--bootstrap-expect", strconv.Itoa(n), "--join", strings.Join(join, ","),
				"--tls-cert", cert, "--tls-key", certKey, "--tls-ca", ca,
				"--kek-file", filepath.Join(dir, "data", "kek.key")}}
		c.Nodes = append(c.Nodes, node)
	}
	for _, node := range c.Nodes {
		if err := node.Start(); err != nil {
			c.Stop()
			return nil, err
		}
	}
	if _, err := c.WaitHealthy(ctx); err != nil {
		c.Stop()
		return nil, err
	}
	cl, err := c.Client(0)
	if err != nil {
		c.Stop()
		return nil, err
	}
	for {
		lr, err := cl.Init(ctx, "", "")
		if err == nil {
			c.Token = lr.Token
			break
		}
		if ctx.Err() != nil {
			c.Stop()
			return nil, fmt.Errorf("jepsen: init: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return c, nil
}

// Client returns an API client bound to node i only (no failover), so an operation's node
// is known, as Jepsen clients are bound to their node.
func (c *Cluster) Client(i int) (*client.Client, error) {
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &requestIDTransport{inner: client.NewTransport(c.TLS)}}
	return client.New(c.Nodes[i].URL(), client.WithHTTPClient(hc), client.WithToken(c.Token))
}

// Health fetches node i's health (standbyok), or an error.
func (c *Cluster) Health(ctx context.Context, i int) (wire.HealthResponse, error) {
	var h wire.HealthResponse
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.Nodes[i].URL()+"/v1/sys/health?standbyok", nil)
	resp, err := c.http.Do(req)
	if err != nil {
		return h, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&h)
	return h, err
}

// Leader returns the index of the node that says it leads, or -1.
func (c *Cluster) Leader(ctx context.Context) int {
	for i := range c.Nodes {
		if !c.Nodes[i].Running() {
			continue
		}
		if h, err := c.Health(ctx, i); err == nil && h.State == "Leader" {
			return i
		}
	}
	return -1
}

// WaitHealthy polls until some node leads and every running node names it; it returns the
// leader.
func (c *Cluster) WaitHealthy(ctx context.Context) (int, error) {
	for {
		if l := c.Leader(ctx); l >= 0 {
			lh, _ := c.Health(ctx, l)
			agree := true
			for i := range c.Nodes {
				if !c.Nodes[i].Running() {
					continue
				}
				if h, err := c.Health(ctx, i); err != nil || h.Leader != lh.NodeID {
					agree = false
				}
			}
			if agree {
				return l, nil
			}
		}
		select {
		case <-ctx.Done():
			var views []string
			for i, n := range c.Nodes {
				hctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				h, err := c.Health(hctx, i)
				cancel()
				views = append(views, fmt.Sprintf("%s: running=%v state=%s leader=%q err=%v", n.ID, n.Running(), h.State, h.Leader, err))
			}
			return -1, fmt.Errorf("jepsen: cluster not healthy: %w (%s)", ctx.Err(), strings.Join(views, "; "))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop kills every node and closes their logs.
func (c *Cluster) Stop() {
	for _, n := range c.Nodes {
		_ = n.Resume()
		n.Kill()
		n.log.Close()
	}
}

// requestIDTransport copies the X-Request-Id of each answer into the *string the request's
// context carries (see withRequestID), so an operation can be linked to its audit record.
type requestIDTransport struct{ inner http.RoundTripper }

type reqIDKey struct{}

func withRequestID(ctx context.Context, dst *string) context.Context {
	return context.WithValue(ctx, reqIDKey{}, dst)
}

func (t *requestIDTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.inner.RoundTrip(r)
	if resp != nil {
		if dst, ok := r.Context().Value(reqIDKey{}).(*string); ok && dst != nil {
			*dst = resp.Header.Get("X-Request-Id")
		}
	}
	return resp, err
}
