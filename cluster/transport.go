package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// One listener carries all node-to-node traffic. After the TLS handshake (mutual, against the
// cluster CA) the dialer sends one byte naming the protocol:
const (
	protoRaft byte = 'R' // hashicorp/raft's NetworkTransport
	protoRPC  byte = 'P' // keyward's cluster RPC (HTTP/1.1): forwarding, read index, join
)

// ErrClosed is returned by Accept after the listener closed.
var ErrClosed = errors.New("listener closed")

// Dialer opens node-to-node connections: TLS when tlsConf is set, plain TCP in dev mode.
type Dialer struct {
	tlsConf *tls.Config
	// local, when set, is the source address of outgoing connections: on loopback, nodes
	// each own an address such as 127.0.0.2, so connections come from the advertised address
	// and per-node firewall rules (partition tests) see who is talking.
	local *net.TCPAddr
}

// DialProto connects to addr and announces proto.
func (d Dialer) DialProto(ctx context.Context, addr string, proto byte) (net.Conn, error) {
	nd := net.Dialer{}
	if d.local != nil {
		nd.LocalAddr = d.local
	}
	conn, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if d.tlsConf != nil {
		tc := tls.Client(conn, d.tlsConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("tls handshake with %s: %w", addr, err)
		}
		conn = tc
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetWriteDeadline(dl)
	}
	if _, err := conn.Write([]byte{proto}); err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetWriteDeadline(time.Time{})
	return conn, nil
}

// muxListener accepts node-to-node connections and hands each to the listener of its protocol.
type muxListener struct {
	ln      net.Listener
	tlsConf *tls.Config
	log     *slog.Logger
	raft    *subListener
	rpc     *subListener
	wg      sync.WaitGroup
}

func newMuxListener(ln net.Listener, tlsConf *tls.Config, log *slog.Logger) *muxListener {
	m := &muxListener{ln: ln, tlsConf: tlsConf, log: log}
	m.raft = newSubListener(ln.Addr())
	m.rpc = newSubListener(ln.Addr())
	m.wg.Add(1)
	go m.serve()
	return m
}

func (m *muxListener) serve() {
	defer m.wg.Done()
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			m.raft.close()
			m.rpc.close()
			return
		}
		go m.route(conn)
	}
}

// route finishes the handshake and reads the protocol byte, each bounded so a silent peer
// cannot hold a goroutine.
func (m *muxListener) route(conn net.Conn) {
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if m.tlsConf != nil {
		tc := tls.Server(conn, m.tlsConf)
		if err := tc.Handshake(); err != nil {
			m.log.Warn("refused cluster connection", "remote", conn.RemoteAddr().String(), "err", err)
			conn.Close()
			return
		}
		conn = tc
	}
	var b [1]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		conn.Close()
		return
	}
	_ = conn.SetDeadline(time.Time{})
	switch b[0] {
	case protoRaft:
		m.raft.deliver(conn)
	case protoRPC:
		m.rpc.deliver(conn)
	default:
		m.log.Warn("unknown cluster protocol", "remote", conn.RemoteAddr().String(), "byte", b[0])
		conn.Close()
	}
}

func (m *muxListener) Close() error {
	err := m.ln.Close()
	m.wg.Wait()
	return err
}

// subListener is a net.Listener fed by the mux.
type subListener struct {
	addr      net.Addr
	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

func newSubListener(addr net.Addr) *subListener {
	return &subListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (s *subListener) deliver(c net.Conn) {
	select {
	case s.conns <- c:
	case <-s.done:
		c.Close()
	}
}

func (s *subListener) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.done:
		return nil, ErrClosed
	}
}

func (s *subListener) close()         { s.closeOnce.Do(func() { close(s.done) }) }
func (s *subListener) Close() error   { s.close(); return nil }
func (s *subListener) Addr() net.Addr { return s.addr }

// raftLayer is the raft.StreamLayer over the mux.
type raftLayer struct {
	*subListener
	dialer    Dialer
	advertise net.Addr
}

func (l *raftLayer) Addr() net.Addr { return l.advertise }

func (l *raftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return l.dialer.DialProto(ctx, string(address), protoRaft)
}
