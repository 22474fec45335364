package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ioLimit bounds every socket operation of a test handshake so a broken test fails instead of
// hanging; it is not a speed expectation.
const ioLimit = 30 * time.Second

// outcome is what each side of a test connection saw.
type outcome struct {
	serverErr, clientErr error
	server, client       tls.ConnectionState
}

// connect serves one connection on a real loopback socket with srv and dials it with cli: a
// TLS handshake, then the client sends a line that the server echoes. In TLS 1.3 a client
// learns that the server rejected its certificate only when it reads, hence the echo.
func connect(t *testing.T, srv, cli *tls.Config) outcome {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var o outcome
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			o.serverErr = err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(ioLimit))
		tc := tls.Server(c, srv)
		if o.serverErr = tc.Handshake(); o.serverErr != nil {
			return
		}
		o.server = tc.ConnectionState()
		buf := make([]byte, 5)
		if _, o.serverErr = io.ReadFull(tc, buf); o.serverErr == nil {
			_, o.serverErr = tc.Write(buf)
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), ioLimit)
	defer cancel()
	d := tls.Dialer{Config: cli}
	c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err == nil {
		tc := c.(*tls.Conn)
		_ = tc.SetDeadline(time.Now().Add(ioLimit))
		o.client = tc.ConnectionState()
		if _, err = tc.Write([]byte("ping\n")); err == nil {
			buf := make([]byte, 5)
			if _, err = io.ReadFull(tc, buf); err == nil && string(buf) != "ping\n" {
				t.Errorf("echo %q", buf)
			}
		}
		tc.Close()
	}
	o.clientErr = err
	<-done
	return o
}

// wantOK fails the test unless both sides completed the exchange over TLS version.
func (o outcome) wantOK(t *testing.T, what string, version uint16) {
	t.Helper()
	if o.serverErr != nil || o.clientErr != nil {
		t.Fatalf("%s: server error %v, client error %v", what, o.serverErr, o.clientErr)
	}
	if o.server.Version != version || o.client.Version != version {
		t.Fatalf("%s: versions %s/%s, want %s", what, tls.VersionName(o.server.Version),
			tls.VersionName(o.client.Version), tls.VersionName(version))
	}
}

// wantRefused fails the test unless both sides saw the connection fail.
func (o outcome) wantRefused(t *testing.T, what string) {
	t.Helper()
	if o.serverErr == nil || o.clientErr == nil {
		t.Fatalf("%s: server error %v, client error %v; want both to fail", what, o.serverErr, o.clientErr)
	}
	t.Logf("%s: server: %v; client: %v", what, o.serverErr, o.clientErr)
}

// unknownAuthority reports whether err is a chain that ends at a CA the verifier does not trust.
func unknownAuthority(err error) bool {
	_, ok := errors.AsType[x509.UnknownAuthorityError](err)
	return ok
}

// pushy makes cfg present its certificate to every server that asks for one. A Go client
// offers a certificate only if it is from a CA the server lists as acceptable; an attacker's
// client need not be so polite, and a server must refuse it all the same.
func pushy(cfg *tls.Config) *tls.Config {
	cert := cfg.Certificates[0]
	cfg.Certificates = nil
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &cert, nil
	}
	return cfg
}

// cluster is a cluster CA with two nodes, and an outsider with a CA of its own.
type cluster struct {
	dir                   string
	ca, other             pair
	node1, node2, outside *Peer
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	dir := t.TempDir()
	cl := &cluster{dir: dir, ca: newCA(t, dir, "ca"), other: newCA(t, dir, "other-ca")}
	// The node certificates name no IP address: peers are dialed by 127.0.0.1 regardless.
	cl.node1 = loadPeer(t, newCert(t, cl.ca, dir, "node1", false, false), cl.ca)
	cl.node2 = loadPeer(t, newCert(t, cl.ca, dir, "node2", false, false), cl.ca)
	// The outsider trusts both CAs, so that in a failed handshake only the node refused.
	both := pair{cert: filepath.Join(dir, "both-cas.pem")}
	var bundle []byte
	for _, f := range []string{cl.ca.cert, cl.other.cert} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		bundle = append(bundle, b...)
	}
	if err := os.WriteFile(both.cert, bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	cl.outside = loadPeer(t, newCert(t, cl.other, dir, "outsider", false, false), both)
	return cl
}

func loadPeer(t *testing.T, p, ca pair) *Peer {
	t.Helper()
	peer, err := LoadPeer(p.cert, p.key, ca.cert)
	if err != nil {
		t.Fatal(err)
	}
	return peer
}

func TestPeerMutualTLS(t *testing.T) {
	cl := newCluster(t)
	for _, tc := range []struct {
		name           string
		server, client *Peer
	}{{"node1 serves node2", cl.node1, cl.node2}, {"node2 serves node1", cl.node2, cl.node1}} {
		o := connect(t, tc.server.ServerConfig(), tc.client.ClientConfig())
		o.wantOK(t, tc.name, tls.VersionTLS13)
		if len(o.server.VerifiedChains) == 0 || o.server.PeerCertificates[0].Subject.CommonName != tc.client.cert.Leaf.Subject.CommonName {
			t.Errorf("%s: server saw client %v", tc.name, o.server.PeerCertificates)
		}
		if o.client.PeerCertificates[0].Subject.CommonName != tc.server.cert.Leaf.Subject.CommonName {
			t.Errorf("%s: client saw server %v", tc.name, o.client.PeerCertificates[0].Subject)
		}
	}

	// A server name that is nowhere in the certificate does not matter either.
	cfg := cl.node2.ClientConfig()
	cfg.ServerName = "somewhere-else.example"
	connect(t, cl.node1.ServerConfig(), cfg).wantOK(t, "foreign server name", tls.VersionTLS13)
}

func TestPeerRefusesOutsiders(t *testing.T) {
	cl := newCluster(t)

	o := connect(t, cl.node1.ServerConfig(), pushy(cl.outside.ClientConfig()))
	o.wantRefused(t, "client from another CA")
	if !unknownAuthority(o.serverErr) {
		t.Errorf("server error %v, want an unknown authority", o.serverErr)
	}

	o = connect(t, cl.outside.ServerConfig(), cl.node1.ClientConfig())
	o.wantRefused(t, "server from another CA")
	if !unknownAuthority(o.clientErr) {
		t.Errorf("client error %v, want an unknown authority", o.clientErr)
	}

	noCert := cl.node1.ClientConfig()
	noCert.Certificates = nil
	o = connect(t, cl.node2.ServerConfig(), noCert)
	o.wantRefused(t, "client without a certificate")
	if !strings.Contains(o.serverErr.Error(), "certificate") {
		t.Errorf("server error %v", o.serverErr)
	}

	tls12 := cl.node1.ClientConfig()
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	connect(t, cl.node2.ServerConfig(), tls12).wantRefused(t, "TLS 1.2 client")

	// A plain client that trusts the cluster CA but shows no certificate: refused.
	plain, err := ClientTLS(cl.ca.cert, "", "")
	if err != nil {
		t.Fatal(err)
	}
	plain.InsecureSkipVerify = true
	connect(t, cl.node1.ServerConfig(), plain).wantRefused(t, "plain TLS client")
}

// TestPeerChecksUsage: a certificate from the cluster CA still needs the right extended key
// usage for the side it is used on.
func TestPeerChecksUsage(t *testing.T) {
	cl := newCluster(t)
	serverOnly := newCert(t, cl.ca, cl.dir, "server-only", true, false)
	clientOnly := newCert(t, cl.ca, cl.dir, "client-only", false, true)
	for _, p := range []pair{serverOnly, clientOnly} {
		if _, err := LoadPeer(p.cert, p.key, cl.ca.cert); err == nil {
			t.Errorf("LoadPeer accepted %s", filepath.Base(p.cert))
		}
	}
	kp := func(p pair) tls.Certificate {
		c, err := tls.LoadX509KeyPair(p.cert, p.key)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	cli := cl.node1.ClientConfig()
	cli.Certificates = []tls.Certificate{kp(serverOnly)}
	o := connect(t, cl.node2.ServerConfig(), cli)
	o.wantRefused(t, "server-only certificate as client")
	if _, ok := errors.AsType[x509.CertificateInvalidError](o.serverErr); !ok {
		t.Errorf("server error %v, want an invalid certificate", o.serverErr)
	}

	srv := cl.node2.ServerConfig()
	srv.Certificates = []tls.Certificate{kp(clientOnly)}
	o = connect(t, srv, cl.node1.ClientConfig())
	o.wantRefused(t, "client-only certificate as server")
	if e, ok := errors.AsType[x509.CertificateInvalidError](o.clientErr); !ok || e.Reason != x509.IncompatibleUsage {
		t.Errorf("client error %v, want incompatible usage", o.clientErr)
	}
}

func TestLoadPeerErrors(t *testing.T) {
	cl := newCluster(t)
	n := newCert(t, cl.ca, cl.dir, "n", false, false)
	if _, err := LoadPeer(n.cert, n.key, cl.other.cert); !unknownAuthority(err) {
		t.Errorf("certificate of another CA: err %v", err)
	}
	if _, err := LoadPeer(n.cert, cl.ca.key, cl.ca.cert); err == nil {
		t.Error("mismatched key accepted")
	}
	if _, err := LoadPeer(n.cert, n.key, n.key); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("CA file without a certificate: err %v, want ErrNoCertificate", err)
	}
	if _, err := LoadPeer(n.cert, n.key, filepath.Join(cl.dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing CA file: err %v", err)
	}
}

func TestAPIServerConfig(t *testing.T) {
	dir := t.TempDir()
	clusterCA := newCA(t, dir, "cluster-ca")
	orgCA := newCA(t, dir, "org-ca")
	otherCA := newCA(t, dir, "other-ca")
	c, k, err := CreateCert(CertRequest{CACert: clusterCA.cert, CAKey: clusterCA.key, Dir: dir, Name: "api",
		DNSNames: []string{"localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}, Validity: time.Hour, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	api := pair{c, k}
	alice := newCert(t, orgCA, dir, "alice", false, true)
	mallory := newCert(t, otherCA, dir, "mallory", false, true)

	client := func(certs pair) *tls.Config {
		t.Helper()
		cfg, err := ClientTLS(clusterCA.cert, certs.cert, certs.key)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}

	// No client CA: clients are not asked for a certificate.
	open, err := APIServerConfig(api.cert, api.key, "")
	if err != nil {
		t.Fatal(err)
	}
	o := connect(t, open, client(pair{}))
	o.wantOK(t, "no client CA, no client certificate", tls.VersionTLS13)
	o = connect(t, open, client(alice))
	o.wantOK(t, "no client CA, client has a certificate", tls.VersionTLS13)
	if len(o.server.PeerCertificates) != 0 {
		t.Error("server without a client CA received a client certificate")
	}
	tls12 := client(pair{})
	tls12.MaxVersion = tls.VersionTLS12
	o = connect(t, open, tls12)
	o.wantOK(t, "TLS 1.2 client", tls.VersionTLS12)
	if s := o.server.CipherSuite; s != tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 &&
		s != tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 && s != tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 {
		t.Errorf("TLS 1.2 suite %s", tls.CipherSuiteName(s))
	}
	tls11 := client(pair{})
	tls11.MinVersion, tls11.MaxVersion = tls.VersionTLS11, tls.VersionTLS11
	connect(t, open, tls11).wantRefused(t, "TLS 1.1 client")

	// Client CA set: certificates are optional, but one that is given must chain to it.
	withCA, err := APIServerConfig(api.cert, api.key, orgCA.cert)
	if err != nil {
		t.Fatal(err)
	}
	connect(t, withCA, client(pair{})).wantOK(t, "client CA, no client certificate", tls.VersionTLS13)
	o = connect(t, withCA, client(alice))
	o.wantOK(t, "client certificate from the client CA", tls.VersionTLS13)
	if len(o.server.VerifiedChains) == 0 || o.server.VerifiedChains[0][0].Subject.CommonName != "alice" {
		t.Errorf("server did not verify alice: %v", o.server.VerifiedChains)
	}
	o = connect(t, withCA, pushy(client(mallory)))
	o.wantRefused(t, "client certificate from another CA")
	if !unknownAuthority(o.serverErr) {
		t.Errorf("server error %v, want an unknown authority", o.serverErr)
	}

	// The client checks the server: another CA, or a name not in the certificate, is refused.
	distrust, err := ClientTLS(otherCA.cert, "", "")
	if err != nil {
		t.Fatal(err)
	}
	o = connect(t, open, distrust)
	o.wantRefused(t, "API server from an untrusted CA")
	if !unknownAuthority(o.clientErr) {
		t.Errorf("client error %v, want an unknown authority", o.clientErr)
	}
	wrongName := client(pair{})
	wrongName.ServerName = "elsewhere.example"
	o = connect(t, open, wrongName)
	o.wantRefused(t, "API server under another name")
	if _, ok := errors.AsType[x509.HostnameError](o.clientErr); !ok {
		t.Errorf("client error %v, want a host name mismatch", o.clientErr)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir, "ca")
	if _, err := ClientTLS("", ca.cert, ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("certificate without key: err %v, want ErrInvalid", err)
	}
	if _, err := ClientTLS("", "", ca.key); !errors.Is(err, ErrInvalid) {
		t.Errorf("key without certificate: err %v, want ErrInvalid", err)
	}
	if cfg, err := ClientTLS("", "", ""); err != nil || cfg.RootCAs != nil || cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("system roots: %v, %v", cfg, err)
	}
	if _, err := ClientTLS(ca.key, "", ""); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("CA file without a certificate: err %v, want ErrNoCertificate", err)
	}
	if _, err := APIServerConfig(ca.cert, ca.key, ca.key); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("client CA file without a certificate: err %v, want ErrNoCertificate", err)
	}
	if _, err := APIServerConfig("", "", ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("no certificate: err %v, want ErrInvalid", err)
	}
}
