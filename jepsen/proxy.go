package jepsen

import (
	"bufio"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// proxyNet is the fallback network for machines without root: every node runs on 127.0.0.1
// and advertises a TCP proxy as its cluster address, so all node-to-node traffic (Raft, RPC,
// forwarded writes) passes through the proxies. A proxy learns which node connected by finding
// the connecting socket among the node processes' file descriptors, then refuses or cuts
// connections across a partition and delays data of degraded nodes. Limits: packet loss is not
// simulated, a cut closes connections instead of silently dropping packets, and gossip (UDP)
// is not cut.
type proxyNet struct {
	addrs  []Addrs
	mu     sync.Mutex
	pids   []int
	block  func(i, j int) bool
	delay  []time.Duration
	conns  map[*proxyConn]bool
	lns    []net.Listener
	closed bool
}

type proxyConn struct {
	from, to int
	a, b     net.Conn
}

// NewProxyNet starts one proxy per node on loopback.
func NewProxyNet(n int) (Network, error) {
	p := &proxyNet{pids: make([]int, n), delay: make([]time.Duration, n), conns: map[*proxyConn]bool{},
		block: func(int, int) bool { return false }}
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			_ = p.Close()
			return nil, err
		}
		p.lns = append(p.lns, ln)
		a := Addrs{IP: "127.0.0.1", HTTP: freePort(), RaftBind: freePort(), RaftAdvertise: ln.Addr().String(), Gossip: freePort()}
		p.addrs = append(p.addrs, a)
		go p.serve(i, ln)
	}
	return p, nil
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:0"
	}
	defer l.Close()
	return l.Addr().String()
}

func (p *proxyNet) Kind() string      { return "proxy" }
func (p *proxyNet) Addrs(i int) Addrs { return p.addrs[i] }

func (p *proxyNet) Command(_ int, path string, args ...string) *exec.Cmd {
	return exec.Command(path, args...)
}

func (p *proxyNet) Attach(i, pid int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pids[i] = pid
}

func (p *proxyNet) serve(to int, ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go p.handle(to, c)
	}
}

func (p *proxyNet) handle(to int, c net.Conn) {
	from := p.source(c)
	p.mu.Lock()
	if p.closed || from >= 0 && p.block(to, from) {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.mu.Unlock()
	up, err := net.DialTimeout("tcp", p.addrs[to].RaftBind, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	pc := &proxyConn{from: from, to: to, a: c, b: up}
	p.mu.Lock()
	// Check again: a partition that came while dialing did not see this connection to cut it.
	if p.closed || from >= 0 && p.block(to, from) {
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[pc] = true
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go p.pipe(pc, up, c, done)
	go p.pipe(pc, c, up, done)
	<-done
	c.Close()
	up.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, pc)
	p.mu.Unlock()
}

func (p *proxyNet) pipe(pc *proxyConn, dst, src net.Conn, done chan struct{}) {
	defer func() { done <- struct{}{} }()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			d := p.delay[pc.to]
			if pc.from >= 0 {
				d += p.delay[pc.from]
			}
			p.mu.Unlock()
			if d > 0 {
				time.Sleep(d)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or a closed connection: the caller closes both sides
		}
	}
}

// source finds the node whose process owns the other end of c, or -1.
func (p *proxyNet) source(c net.Conn) int {
	ra, ok := c.RemoteAddr().(*net.TCPAddr)
	la, ok2 := c.LocalAddr().(*net.TCPAddr)
	if !ok || !ok2 {
		return -1
	}
	inode := socketInode(ra.Port, la.Port)
	if inode == "" {
		return -1
	}
	p.mu.Lock()
	pids := append([]int(nil), p.pids...)
	p.mu.Unlock()
	want := "socket:[" + inode + "]"
	for i, pid := range pids {
		if pid == 0 {
			continue
		}
		dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if l, _ := os.Readlink(filepath.Join(dir, e.Name())); l == want {
				return i
			}
		}
	}
	return -1
}

// socketInode returns the inode of the TCP socket with local port lport connected to remote
// port rport, from /proc/net/tcp{,6}.
func socketInode(lport, rport int) string {
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 10 || fs[0] == "sl" {
				continue
			}
			if portOf(fs[1]) == lport && portOf(fs[2]) == rport {
				fh.Close()
				return fs[9]
			}
		}
		fh.Close()
	}
	return ""
}

func portOf(hexAddr string) int {
	i := strings.LastIndexByte(hexAddr, ':')
	if i < 0 {
		return -1
	}
	b, err := hex.DecodeString(hexAddr[i+1:])
	if err != nil || len(b) != 2 {
		return -1
	}
	return int(b[0])<<8 | int(b[1])
}

func (p *proxyNet) Partition(blocked func(i, j int) bool) error {
	p.mu.Lock()
	p.block = blocked
	var cut []*proxyConn
	for pc := range p.conns {
		if pc.from >= 0 && blocked(pc.to, pc.from) {
			cut = append(cut, pc)
		}
	}
	p.mu.Unlock()
	for _, pc := range cut {
		pc.a.Close()
		pc.b.Close()
	}
	return nil
}

func (p *proxyNet) Degrade(i int, delay, _ time.Duration, _ float64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay[i] = delay
	return nil
}

func (p *proxyNet) Restore(i int) error { return p.Degrade(i, 0, 0, 0) }

func (p *proxyNet) Close() error {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.conns = map[*proxyConn]bool{}
	p.mu.Unlock()
	for _, ln := range p.lns {
		ln.Close()
	}
	for pc := range conns {
		pc.a.Close()
		pc.b.Close()
	}
	return nil
}
