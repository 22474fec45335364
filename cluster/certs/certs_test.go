package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// pair is the paths of a certificate and its key.
type pair struct{ cert, key string }

// newCA creates a CA named name in dir.
func newCA(t *testing.T, dir, name string) pair {
	t.Helper()
	c, k, err := CreateCA(dir, name, name+" CA", 24*time.Hour)
	if err != nil {
		t.Fatalf("CreateCA %s: %v", name, err)
	}
	return pair{c, k}
}

// newCert issues a certificate named name from ca into dir.
func newCert(t *testing.T, ca pair, dir, name string, server, client bool) pair {
	t.Helper()
	c, k, err := CreateCert(CertRequest{CACert: ca.cert, CAKey: ca.key, Dir: dir, Name: name,
		DNSNames: []string{name + ".keyward.invalid"}, Validity: time.Hour, Server: server, Client: client})
	if err != nil {
		t.Fatalf("CreateCert %s: %v", name, err)
	}
	return pair{c, k}
}

// readCert parses the single certificate in the PEM file.
func readCert(t *testing.T, file string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	b, rest := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("%s: want exactly one CERTIFICATE block", file)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// readKey parses the PKCS #8 ECDSA key in the PEM file.
func readKey(t *testing.T, file string) *ecdsa.PrivateKey {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" {
		t.Fatalf("%s: want a PRIVATE KEY block", file)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		t.Fatalf("%s: key is %T, want ECDSA P-256", file, k)
	}
	return ek
}

func TestCreateCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "dir")
	before := time.Now()
	certPath, keyPath, err := CreateCA(dir, "keyward-ca", "keyward cluster CA", 10*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if certPath != filepath.Join(dir, "keyward-ca.pem") || keyPath != filepath.Join(dir, "keyward-ca-key.pem") {
		t.Fatalf("paths %s, %s", certPath, keyPath)
	}
	c := readCert(t, certPath)
	k := readKey(t, keyPath)
	if !c.PublicKey.(*ecdsa.PublicKey).Equal(k.Public()) {
		t.Fatal("certificate and key do not match")
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Fatalf("not self-signed: %v", err)
	}
	if c.Subject.CommonName != "keyward cluster CA" || !c.IsCA || !c.BasicConstraintsValid ||
		c.MaxPathLen != 0 || !c.MaxPathLenZero || c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Fatalf("CA certificate: CN %q IsCA %v MaxPathLen %d/%v KeyUsage %b",
			c.Subject.CommonName, c.IsCA, c.MaxPathLen, c.MaxPathLenZero, c.KeyUsage)
	}
	if c.SignatureAlgorithm != x509.ECDSAWithSHA256 {
		t.Errorf("signature algorithm %v", c.SignatureAlgorithm)
	}
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %v", c.SerialNumber)
	}
	if c.NotBefore.After(before) || c.NotAfter.Before(before.Add(10*24*time.Hour-time.Minute)) ||
		c.NotAfter.After(time.Now().Add(10*24*time.Hour)) {
		t.Errorf("validity %s to %s", c.NotBefore, c.NotAfter)
	}
	for _, p := range []string{keyPath, dir} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]os.FileMode{false: 0o600, true: 0o700}[fi.IsDir()]; fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
		}
	}

	// A second CA of the same name in the same place would destroy the first.
	oldCert, _ := os.ReadFile(certPath)
	oldKey, _ := os.ReadFile(keyPath)
	if _, _, err := CreateCA(dir, "keyward-ca", "other", time.Hour); !errors.Is(err, ErrExists) {
		t.Fatalf("overwrite: err %v, want ErrExists", err)
	}
	newCert, _ := os.ReadFile(certPath)
	newKey, _ := os.ReadFile(keyPath)
	if !bytes.Equal(oldCert, newCert) || !bytes.Equal(oldKey, newKey) {
		t.Fatal("existing CA files changed")
	}
	// Two CAs are different CAs: different keys and serials.
	other := newCA(t, dir, "other")
	if oc := readCert(t, other.cert); oc.SerialNumber.Cmp(c.SerialNumber) == 0 ||
		readKey(t, other.key).Equal(k) {
		t.Error("second CA reuses serial or key")
	}
}

func TestCreateCert(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir, "ca")
	caCert := readCert(t, ca.cert)
	spiffe, _ := url.Parse("spiffe://keyward.example/node/n1")
	certPath, keyPath, err := CreateCert(CertRequest{
		CACert: ca.cert, CAKey: ca.key, Dir: filepath.Join(dir, "n1"), Name: "node1",
		DNSNames: []string{"node1.keyward.internal", "localhost"},
		IPs:      []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.5"), net.ParseIP("::1")},
		URIs:     []*url.URL{spiffe},
		Validity: 365 * 24 * time.Hour, // longer than the CA: cut to the CA's expiry
	})
	if err != nil {
		t.Fatal(err)
	}
	if certPath != filepath.Join(dir, "n1", "node1.pem") || keyPath != filepath.Join(dir, "n1", "node1-key.pem") {
		t.Fatalf("paths %s, %s", certPath, keyPath)
	}
	c := readCert(t, certPath)
	if !c.PublicKey.(*ecdsa.PublicKey).Equal(readKey(t, keyPath).Public()) {
		t.Fatal("certificate and key do not match")
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{u},
			DNSName: "node1.keyward.internal"}); err != nil {
			t.Errorf("verify for usage %v: %v", u, err)
		}
	}
	if c.Subject.CommonName != "node1" || c.IsCA || c.KeyUsage != x509.KeyUsageDigitalSignature ||
		!slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Errorf("leaf: CN %q IsCA %v KeyUsage %b ExtKeyUsage %v", c.Subject.CommonName, c.IsCA, c.KeyUsage, c.ExtKeyUsage)
	}
	if !slices.Equal(c.DNSNames, []string{"node1.keyward.internal", "localhost"}) || len(c.IPAddresses) != 3 ||
		!c.IPAddresses[1].Equal(net.ParseIP("10.0.0.5")) || len(c.URIs) != 1 || c.URIs[0].String() != spiffe.String() {
		t.Errorf("SANs: %v %v %v", c.DNSNames, c.IPAddresses, c.URIs)
	}
	if !c.NotAfter.Equal(caCert.NotAfter) {
		t.Errorf("NotAfter %s, want the CA's %s", c.NotAfter, caCert.NotAfter)
	}
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 || c.SerialNumber.Cmp(caCert.SerialNumber) == 0 {
		t.Errorf("serial %v", c.SerialNumber)
	}
	if fi, err := os.Stat(keyPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode: %v %v", fi, err)
	}

	// Usages: server only, client only.
	for _, tc := range []struct {
		server, client bool
		want           []x509.ExtKeyUsage
	}{
		{true, false, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		{false, true, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
		{true, true, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}},
	} {
		p := newCert(t, ca, dir, "usage-"+map[bool]string{true: "s"}[tc.server]+map[bool]string{true: "c"}[tc.client], tc.server, tc.client)
		if got := readCert(t, p.cert).ExtKeyUsage; !slices.Equal(got, tc.want) {
			t.Errorf("server %v client %v: ExtKeyUsage %v, want %v", tc.server, tc.client, got, tc.want)
		}
	}
}

func TestCreateCertRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir, "ca")
	n := newCert(t, ca, dir, "node", false, false)
	old, _ := os.ReadFile(n.cert)
	req := CertRequest{CACert: ca.cert, CAKey: ca.key, Dir: dir, Name: "node", Validity: time.Hour}
	if _, _, err := CreateCert(req); !errors.Is(err, ErrExists) {
		t.Fatalf("err %v, want ErrExists", err)
	}
	if now, _ := os.ReadFile(n.cert); !bytes.Equal(now, old) {
		t.Fatal("certificate overwritten")
	}

	// Only the key is left: still refused, and no certificate appears beside the old key.
	if err := os.Remove(n.cert); err != nil {
		t.Fatal(err)
	}
	if _, _, err := CreateCert(req); !errors.Is(err, ErrExists) {
		t.Fatalf("key only: err %v, want ErrExists", err)
	}
	if _, err := os.Stat(n.cert); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("certificate written beside an existing key: %v", err)
	}
	// Only the certificate is left: refused, and the key file is not created either.
	if err := os.Rename(n.key, n.cert); err != nil {
		t.Fatal(err)
	}
	if _, _, err := CreateCert(req); !errors.Is(err, ErrExists) {
		t.Fatalf("cert only: err %v, want ErrExists", err)
	}
	if _, err := os.Stat(n.key); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("key written beside an existing certificate: %v", err)
	}
	// The CA key is never clobbered by a certificate whose name makes the same path.
	caKeyBefore, _ := os.ReadFile(ca.key)
	req.Name = "ca"
	if _, _, err := CreateCert(req); !errors.Is(err, ErrExists) {
		t.Fatalf("name of the CA: err %v, want ErrExists", err)
	}
	if after, _ := os.ReadFile(ca.key); !bytes.Equal(after, caKeyBefore) {
		t.Fatal("CA key changed")
	}
}

func TestCreateInvalid(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir, "ca")
	leaf := newCert(t, ca, dir, "leaf", false, false)
	for _, name := range []string{"", ".", "..", "a/b", `a\b`, "../x"} {
		if _, _, err := CreateCA(dir, name, "x", time.Hour); !errors.Is(err, ErrInvalid) {
			t.Errorf("CreateCA name %q: err %v, want ErrInvalid", name, err)
		}
		if _, _, err := CreateCert(CertRequest{CACert: ca.cert, CAKey: ca.key, Dir: dir, Name: name, Validity: time.Hour}); !errors.Is(err, ErrInvalid) {
			t.Errorf("CreateCert name %q: err %v, want ErrInvalid", name, err)
		}
	}
	for _, v := range []time.Duration{0, -time.Hour} {
		if _, _, err := CreateCA(dir, "x", "x", v); !errors.Is(err, ErrInvalid) {
			t.Errorf("CreateCA validity %v: err %v, want ErrInvalid", v, err)
		}
	}
	// A leaf cannot act as a CA.
	if _, _, err := CreateCert(CertRequest{CACert: leaf.cert, CAKey: leaf.key, Dir: dir, Name: "x", Validity: time.Hour}); !errors.Is(err, ErrNotCA) {
		t.Errorf("leaf as CA: err %v, want ErrNotCA", err)
	}
	// The CA key must belong to the CA certificate.
	if _, _, err := CreateCert(CertRequest{CACert: ca.cert, CAKey: leaf.key, Dir: dir, Name: "x", Validity: time.Hour}); err == nil {
		t.Error("mismatched CA key accepted")
	}
	if _, _, err := CreateCert(CertRequest{CACert: filepath.Join(dir, "missing.pem"), CAKey: ca.key, Dir: dir, Name: "x", Validity: time.Hour}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing CA: err %v", err)
	}
	if entries, _ := filepath.Glob(filepath.Join(dir, "x*")); len(entries) != 0 {
		t.Errorf("failed requests left files: %v", entries)
	}
}
