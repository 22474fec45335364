package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyward/keyward/cluster/certs"
)

// TestTLSFilesClientCertReload: the client certificate of TLSFiles is presented for mutual
// TLS, and new connections present the replacement once its files change.
func TestTLSFilesClientCertReload(t *testing.T) {
	dir := t.TempDir()
	ca, caKey, err := certs.CreateCA(dir, "ca", "test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srvCert, srvKey, err := certs.CreateCert(certs.CertRequest{CACert: ca, CAKey: caKey, Dir: dir, Name: "srv",
		IPs: []net.IP{net.ParseIP("127.0.0.1")}, Validity: time.Hour, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(name, cn string) (string, string) {
		c, k, err := certs.CreateCert(certs.CertRequest{CACert: ca, CAKey: caKey, Dir: dir, Name: name,
			CommonName: cn, Validity: time.Hour, Client: true})
		if err != nil {
			t.Fatal(err)
		}
		return c, k
	}
	oneCert, oneKey := issue("one", "svc-one")
	twoCert, twoKey := issue("two", "svc-two")

	pair, err := tls.LoadX509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	pem, _ := os.ReadFile(ca)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cn := "none"
		if len(r.TLS.VerifiedChains) > 0 {
			cn = r.TLS.VerifiedChains[0][0].Subject.CommonName
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"path": "a", "version": 1, "state": "CURRENT", "value": cn})
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool}
	srv.StartTLS()
	defer srv.Close()

	live := filepath.Join(dir, "live.pem")
	liveKey := filepath.Join(dir, "live-key.pem")
	install := func(cert, key string) {
		for src, dst := range map[string]string{cert: live, key: liveKey} {
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst+".new", b, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(dst+".new", dst); err != nil {
				t.Fatal(err)
			}
		}
	}
	install(oneCert, oneKey)
	cfg, err := TLSFiles{CAFile: ca, CertFile: live, KeyFile: liveKey}.Config()
	if err != nil {
		t.Fatal(err)
	}
	who := func() string {
		t.Helper()
		c, err := New(srv.URL, WithTLSConfig(cfg)) // a new transport: a new connection
		if err != nil {
			t.Fatal(err)
		}
		s, err := c.Get(context.Background(), "a", Selector{})
		if err != nil {
			t.Fatal(err)
		}
		return string(s.Value)
	}
	if got := who(); got != "svc-one" {
		t.Fatalf("presented %q", got)
	}
	install(twoCert, twoKey)
	// The modification time may not move within the file system's granularity; the size or
	// time of a rewritten file differs in practice, but make it certain.
	later := time.Now().Add(2 * time.Second)
	_ = os.Chtimes(live, later, later)
	_ = os.Chtimes(liveKey, later, later)
	if got := who(); got != "svc-two" {
		t.Fatalf("after the files changed, presented %q", got)
	}
	if err := os.WriteFile(live, []byte("half written"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := who(); got != "svc-two" {
		t.Fatalf("with broken files, presented %q (want the last good certificate)", got)
	}

	if _, err := (TLSFiles{CertFile: live}).Config(); err == nil {
		t.Fatal("a certificate without a key was accepted")
	}
	if _, err := (TLSFiles{CAFile: live}).Config(); err == nil {
		t.Fatal("a CA file without certificates was accepted")
	}
}
