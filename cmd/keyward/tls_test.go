package main

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/cluster/certs"
)

// parseCertFile parses the single certificate in a PEM file.
func parseCertFile(t *testing.T, file string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" {
		t.Fatalf("%s: no CERTIFICATE block", file)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTLSCreateCAAndCert(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	code, out, errOut := runCLI(nil, "", "tls", "ca", "create", "--dir", caDir, "--days", "30")
	caCert, caKey := filepath.Join(caDir, "keyward-ca.pem"), filepath.Join(caDir, "keyward-ca-key.pem")
	if code != 0 || errOut != "" || out != "Wrote CA certificate "+caCert+"\nWrote CA key "+caKey+"\n" {
		t.Fatalf("ca create: code %d out %q err %q", code, out, errOut)
	}
	ca := parseCertFile(t, caCert)
	if !ca.IsCA || ca.Subject.CommonName != "keyward cluster CA" {
		t.Fatalf("CA: IsCA %v CN %q", ca.IsCA, ca.Subject.CommonName)
	}

	// Flags before and after, lists and repetition.
	code, out, errOut = runCLI(nil, "", "tls", "cert", "create", "--name", "node1", "--ca", caCert,
		"--ca-key", caKey, "--dir", dir, "--dns", "node1.internal, localhost", "--ip", "127.0.0.1,10.0.0.5",
		"--ip", "::1", "--uri", "spiffe://keyward.test/node/node1", "--days", "7")
	nodeCert, nodeKey := filepath.Join(dir, "node1.pem"), filepath.Join(dir, "node1-key.pem")
	if code != 0 || errOut != "" || out != "Wrote certificate "+nodeCert+"\nWrote key "+nodeKey+"\n" {
		t.Fatalf("cert create: code %d out %q err %q", code, out, errOut)
	}
	c := parseCertFile(t, nodeCert)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	for _, name := range []string{"node1.internal", "localhost", "127.0.0.1", "10.0.0.5", "::1"} {
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, DNSName: name,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("verify as %s: %v", name, err)
		}
	}
	if c.Subject.CommonName != "node1" || len(c.URIs) != 1 || c.URIs[0].String() != "spiffe://keyward.test/node/node1" ||
		!slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Errorf("node cert: CN %q URIs %v EKU %v", c.Subject.CommonName, c.URIs, c.ExtKeyUsage)
	}
	if d := c.NotAfter.Sub(c.NotBefore); d < 7*24*time.Hour || d > 7*24*time.Hour+certs.Backdate {
		t.Errorf("validity %s", d)
	}
	for _, f := range []string{caKey, nodeKey} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", f, fi, err)
		}
	}
	if _, err := certs.LoadPeer(nodeCert, nodeKey, caCert); err != nil {
		t.Errorf("node certificate is not a usable peer: %v", err)
	}

	// Server only, with its own common name.
	code, _, errOut = runCLI(nil, "", "tls", "cert", "create", "--ca", caCert, "--ca-key", caKey,
		"--dir", dir, "--name", "api", "--common-name", "keyward API", "--server", "--ip", "127.0.0.1")
	if code != 0 {
		t.Fatalf("server cert: code %d err %q", code, errOut)
	}
	api := parseCertFile(t, filepath.Join(dir, "api.pem"))
	if api.Subject.CommonName != "keyward API" || !slices.Equal(api.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) ||
		!api.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) {
		t.Errorf("api cert: CN %q EKU %v IPs %v", api.Subject.CommonName, api.ExtKeyUsage, api.IPAddresses)
	}

	// Never overwrite: a failure, exit 1, files unchanged.
	before, _ := os.ReadFile(nodeKey)
	code, out, errOut = runCLI(nil, "", "tls", "cert", "create", "--ca", caCert, "--ca-key", caKey,
		"--dir", dir, "--name", "node1")
	if code != 1 || out != "" || !strings.HasPrefix(errOut, "error: ") || !strings.Contains(errOut, "already exists") {
		t.Errorf("overwrite cert: code %d out %q err %q", code, out, errOut)
	}
	if after, _ := os.ReadFile(nodeKey); string(after) != string(before) {
		t.Error("node key overwritten")
	}
	code, _, errOut = runCLI(nil, "", "tls", "ca", "create", "--dir", caDir)
	if code != 1 || !strings.Contains(errOut, "already exists") {
		t.Errorf("overwrite CA: code %d err %q", code, errOut)
	}
	// A leaf is no CA.
	code, _, errOut = runCLI(nil, "", "tls", "cert", "create", "--ca", nodeCert, "--ca-key", nodeKey,
		"--dir", dir, "--name", "x")
	if code != 1 || !strings.Contains(errOut, "not a usable CA") {
		t.Errorf("leaf as CA: code %d err %q", code, errOut)
	}
}

func TestTLSUsage(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		out  string // in stdout on success, stderr otherwise
	}{
		{[]string{"tls"}, 2, "Usage: keyward tls <subcommand>"},
		{[]string{"tls", "--help"}, 0, "cert create"},
		{[]string{"tls", "ca", "--help"}, 0, "ca create"},
		{[]string{"tls", "ca"}, 2, `missing subcommand after "tls ca"`},
		{[]string{"tls", "key", "create"}, 2, `unknown tls subcommand "key create"`},
		{[]string{"tls", "ca", "create", "--help"}, 0, "Usage: keyward tls ca create"},
		{[]string{"tls", "cert", "create", "-h"}, 0, "--ca-key"},
		{[]string{"tls", "ca", "create", "--dir", dir, "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"tls", "ca", "create", "--dir", dir, "--days", "0"}, 2, "--days must be from 1"},
		{[]string{"tls", "ca", "create", "--dir", dir, "--days", "x"}, 2, "invalid value"},
		{[]string{"tls", "ca", "create", "--dir", dir, "--name", "a/b"}, 1, "error: invalid request"},
		{[]string{"tls", "ca", "create", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"tls", "cert", "create", "--ca-key", "k", "--name", "n"}, 2, "--ca is required"},
		{[]string{"tls", "cert", "create", "--ca", "c", "--name", "n"}, 2, "--ca-key is required"},
		{[]string{"tls", "cert", "create", "--ca", "c", "--ca-key", "k"}, 2, "--name is required"},
		{[]string{"tls", "cert", "create", "--ca", "c", "--ca-key", "k", "--name", "n", "--ip", "10.0.0.300"}, 2, `not an IP address: "10.0.0.300"`},
		{[]string{"tls", "cert", "create", "--ca", "c", "--ca-key", "k", "--name", "n", "--uri", "x/y"}, 2, "not an absolute URI"},
		{[]string{"tls", "cert", "create", "--ca", filepath.Join(dir, "missing.pem"), "--ca-key", "k", "--name", "n", "--dir", dir}, 1, "error: load CA"},
	} {
		code, out, errOut := runCLI(nil, "", tc.args...)
		got := out
		if tc.code != 0 {
			got = errOut
		}
		if code != tc.code || !strings.Contains(got, tc.out) {
			t.Errorf("%q: code %d (want %d) out %q err %q (want %q)", tc.args, code, tc.code, out, errOut, tc.out)
		}
		if tc.code == 2 && !strings.Contains(errOut, "Usage: keyward tls") {
			t.Errorf("%q: usage error without usage: %q", tc.args, errOut)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("failed commands left files: %v", entries)
	}
	_, out, _ := runCLI(nil, "", "--help")
	if !strings.Contains(out, "\n  tls ") {
		t.Errorf("top-level usage does not list tls:\n%s", out)
	}
}
