package clustertest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/api/client"
	"github.com/keyward/keyward/api/wire"
	"github.com/keyward/keyward/cluster/certs"
)

// Cluster is a set of real keyward processes on loopback, with TLS, gossip encryption and
// one shared KEK file. Each node owns a loopback address (127.X.0.N), so tests can cut links
// between nodes with firewall rules. Index i in every method is the node's position in Nodes.
type Cluster struct {
	t      testing.TB
	Binary string
	Dir    string
	Nodes  []*Process
	IPs    []string
	CAFile string
	// RaftAddrs are the nodes' cluster (Raft) addresses.
	RaftAddrs []string
	IDs       []string // node ids: n1, n2, ...
	GossipKey string
	KEKFile   string
	Token     string      // admin token, after Init
	TLS       *tls.Config // client TLS trusting the cluster CA
	net       string      // 127.X.0 prefix
	next      int
}

// Options shape a cluster.
type Options struct {
	Voters   int      // started with --bootstrap-expect Voters
	Replicas int      // started with --read-replica --join
	Args     []string // extra server flags for every node
}

// StartCluster builds certificates and starts the nodes, then waits for a leader and for
// every node to know it. Nodes are killed when the test ends.
func StartCluster(t testing.TB, binary string, o Options) *Cluster {
	t.Helper()
	c := NewCluster(t, binary)
	// Reserve every voter's address first so each can be told where the others are.
	for i := 0; i < o.Voters; i++ {
		c.Reserve()
	}
	for i := 0; i < o.Voters; i++ {
		c.StartReserved(i, append([]string{"--bootstrap-expect", strconv.Itoa(o.Voters),
			"--join", strings.Join(c.RaftAddrs, ",")}, o.Args...)...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := c.WaitForLeader(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < o.Replicas; i++ {
		c.AddNode(append([]string{"--read-replica", "--join", c.RaftAddrs[0]}, o.Args...)...)
	}
	for i := range c.Nodes {
		if err := c.Nodes[i].WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}
	c.Init(ctx)
	return c
}

// Init initializes the cluster through node 0 and keeps the admin token for Client.
func (c *Cluster) Init(ctx context.Context) {
	c.t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.Nodes[0].URL()+"/v1/sys/init", nil)
	resp, err := c.Nodes[0].HTTP.Do(req)
	if err != nil {
		c.t.Fatalf("init: %v", err)
	}
	defer resp.Body.Close()
	var out struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || out.Token == "" {
		c.t.Fatalf("init: HTTP %d %v", resp.StatusCode, err)
	}
	c.Token = out.Token
	for _, p := range c.Nodes {
		p.Token = out.Token
	}
}

// NewCluster prepares the CA, gossip key and KEK of a cluster without starting nodes.
func NewCluster(t testing.TB, binary string) *Cluster {
	t.Helper()
	dir := t.TempDir()
	oct, err := rand.Int(rand.Reader, big.NewInt(200))
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, Binary: binary, Dir: dir, net: fmt.Sprintf("127.%d.0", 20+oct.Int64())}
	ca, _, err := certs.CreateCA(dir, "ca", "keyward test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c.CAFile = ca
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	c.GossipKey = base64.StdEncoding.EncodeToString(key)
	c.KEKFile = filepath.Join(dir, "kek.key")
	if c.TLS, err = certs.ClientTLS(ca, "", ""); err != nil {
		t.Fatal(err)
	}
	return c
}

// AddNode starts one more node (with a fresh id, address and certificate) with the given
// extra flags, without waiting for it.
func (c *Cluster) AddNode(args ...string) *Process {
	c.t.Helper()
	i := c.Reserve()
	c.StartReserved(i, args...)
	return c.Nodes[i]
}

// Reserve prepares node i's id, addresses, certificate and data dir without starting it, and
// returns i.
func (c *Cluster) Reserve() int {
	c.t.Helper()
	c.next++
	id := fmt.Sprintf("n%d", c.next)
	ip := fmt.Sprintf("%s.%d", c.net, c.next)
	cert, key, err := certs.CreateCert(certs.CertRequest{
		CACert: c.CAFile, CAKey: strings.TrimSuffix(c.CAFile, ".pem") + "-key.pem", Dir: c.Dir, Name: id,
		CommonName: id, IPs: []net.IP{net.ParseIP(ip)}, Validity: time.Hour, Server: true, Client: true,
	})
	if err != nil {
		c.t.Fatal(err)
	}
	raftAddr := freeAddrOn(c.t, ip)
	gossip := freeAddrOn(c.t, ip)
	p := &Process{
		Binary: c.Binary, HTTPAddr: freeAddrOn(c.t, ip), DataDir: filepath.Join(c.Dir, id), Scheme: "https",
		HTTP: &http.Client{Timeout: 5 * time.Second, Transport: client.NewTransport(c.TLS)},
	}
	p.Env = []string{"KEYWARD_GOSSIP_KEY=" + c.GossipKey}
	p.Args = []string{"--node-id", id, "--data-dir", p.DataDir, "--http-addr", p.HTTPAddr,
		"--raft-addr", raftAddr, "--gossip-addr", gossip,
		"--tls-cert", cert, "--tls-key", key, "--tls-ca", c.CAFile, "--kek-file", c.KEKFile}
	c.Nodes = append(c.Nodes, p)
	c.IPs = append(c.IPs, ip)
	c.RaftAddrs = append(c.RaftAddrs, raftAddr)
	c.IDs = append(c.IDs, id)
	return len(c.Nodes) - 1
}

// StartReserved starts reserved node i with extra flags.
func (c *Cluster) StartReserved(i int, args ...string) {
	c.t.Helper()
	p := c.Nodes[i]
	p.Args = append(p.Args, args...)
	if err := p.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(p.Kill)
}

// freeAddrOn returns ip:port with a port that was free a moment ago for both TCP and UDP
// (gossip uses both). Ports come from below Linux's ephemeral range (32768 and up), so an
// outgoing connection of another node cannot take the port before the node binds it.
func freeAddrOn(t testing.TB, ip string) string {
	t.Helper()
	for try := 0; try < 200; try++ {
		n, err := rand.Int(rand.Reader, big.NewInt(22000))
		if err != nil {
			t.Fatal(err)
		}
		addr := net.JoinHostPort(ip, strconv.Itoa(10000+int(n.Int64())))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		return addr
	}
	t.Fatalf("no free port on %s", ip)
	return ""
}

// Client returns a Go client for node i.
func (c *Cluster) Client(i int) *client.Client {
	c.t.Helper()
	cl, err := client.New(c.Nodes[i].URL(), client.WithTLSConfig(c.TLS), client.WithToken(c.Token))
	if err != nil {
		c.t.Fatal(err)
	}
	return cl
}

// Health fetches node i's /v1/sys/health (with standbyok), or an error if it does not answer.
func (c *Cluster) Health(i int) (wire.HealthResponse, error) {
	var h wire.HealthResponse
	if !c.Nodes[i].Running() {
		return h, fmt.Errorf("node %d is not running", i)
	}
	resp, err := c.Nodes[i].HTTP.Get(c.Nodes[i].URL() + "/v1/sys/health?standbyok")
	if err != nil {
		return h, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&h)
	return h, err
}

// Leader returns the index of the node that says it is the leader, or -1.
func (c *Cluster) Leader() int {
	for i := range c.Nodes {
		if h, err := c.Health(i); err == nil && h.State == "Leader" {
			return i
		}
	}
	return -1
}

// WaitForLeader polls until one running node is leader and every running node names it.
func (c *Cluster) WaitForLeader(ctx context.Context) (int, error) {
	for {
		if l := c.Leader(); l >= 0 {
			lh, _ := c.Health(l)
			agree := true
			for i := range c.Nodes {
				if !c.Nodes[i].Running() {
					continue
				}
				if h, err := c.Health(i); err != nil || h.Leader != lh.NodeID {
					agree = false
				}
			}
			if agree {
				return l, nil
			}
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("clustertest: no agreed leader: %w\n%s", ctx.Err(), c.Dump())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// WaitForNewLeader waits for a leader other than old.
func (c *Cluster) WaitForNewLeader(ctx context.Context, old int) (int, error) {
	for {
		if l, err := c.WaitForLeader(ctx); err != nil {
			return -1, err
		} else if l != old {
			return l, nil
		}
		select {
		case <-ctx.Done():
			return -1, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Kill sends SIGKILL to node i.
func (c *Cluster) Kill(i int) { c.Nodes[i].Kill() }

// Stop sends SIGTERM to node i.
func (c *Cluster) Stop(i int) { c.Nodes[i].Stop() }

// Restart starts node i again (after Kill or Stop) with its data and flags.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if err := c.Nodes[i].Start(); err != nil {
		c.t.Fatal(err)
	}
}

// Dump returns every node's log, for failure messages.
func (c *Cluster) Dump() string {
	var b strings.Builder
	for i, p := range c.Nodes {
		fmt.Fprintf(&b, "===== node %d (%s) =====\n%s\n", i, p.HTTPAddr, lastLines(p.Logs(), 60))
	}
	return b.String()
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// WriteFile is a small helper for tests that need a file in the cluster's directory.
func (c *Cluster) WriteFile(name string, data []byte) string {
	c.t.Helper()
	p := filepath.Join(c.Dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		c.t.Fatal(err)
	}
	return p
}
