// Package certs creates a cluster CA and node certificates, and builds the TLS configurations
// keyward's listeners and dialers use.
package certs

import (
	"cmp"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Errors returned by this package, wrapped with the file or field they concern.
var (
	// ErrExists: an output file already exists; nothing was written or overwritten.
	ErrExists = errors.New("file already exists")
	// ErrInvalid: a request is malformed (bad output name, validity not positive, a
	// certificate file without its key); nothing was written.
	ErrInvalid = errors.New("invalid request")
	// ErrNotCA: the certificate given as the issuing CA is not a CA certificate that may sign
	// certificates, or it has expired.
	ErrNotCA = errors.New("not a usable CA certificate")
	// ErrNoCertificate: a PEM file holds no certificate.
	ErrNoCertificate = errors.New("no certificate in PEM file")
)

// Backdate is how long before its creation a certificate becomes valid, so that nodes whose
// clocks run a little behind accept it at once.
const Backdate = 5 * time.Minute

// Output file modes.
const (
	certMode = 0o644
	keyMode  = 0o600
	dirMode  = 0o700
)

// CreateCA writes a new self-signed ECDSA P-256 CA certificate and key (PEM) into dir as
// <name>.pem and <name>-key.pem (key mode 0600; refuse to overwrite existing files). Returns the paths.
//
// dir is created (mode 0700) if missing; an empty dir is the working directory. An empty
// commonName defaults to name. The CA may sign leaf certificates only (path length zero). If
// either file exists the error wraps ErrExists and nothing is written.
func CreateCA(dir, name, commonName string, validity time.Duration) (certPath, keyPath string, err error) {
	if err := checkOutput(name, validity); err != nil {
		return "", "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return "", "", err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cmp.Or(commonName, name)},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", fmt.Errorf("create CA certificate: %w", err)
	}
	return writePair(dir, name, der, key)
}

// CertRequest describes a certificate for CreateCert to issue.
type CertRequest struct {
	CACert, CAKey string // paths of the issuing CA's certificate and key (PEM)
	Dir, Name     string // output: <Dir>/<Name>.pem and <Name>-key.pem (0600), refuse to overwrite
	CommonName    string // default Name
	DNSNames      []string
	IPs           []net.IP
	URIs          []*url.URL // e.g. spiffe://... (used later for workload identity)
	// Validity is how long the certificate is valid from now; it never outlives the CA, so it
	// is cut short at the CA's expiry.
	Validity       time.Duration
	Server, Client bool // ExtKeyUsage ServerAuth / ClientAuth; neither means a node cert with both
}

// CreateCert issues a new ECDSA P-256 certificate signed by the CA in r.CACert and r.CAKey and
// writes it and its key (PEM) as <r.Dir>/<r.Name>.pem and <r.Name>-key.pem, the key with mode
// 0600. It refuses to overwrite existing files (ErrExists). Returns the paths.
func CreateCert(r CertRequest) (certPath, keyPath string, err error) {
	if err := checkOutput(r.Name, r.Validity); err != nil {
		return "", "", err
	}
	ca, err := loadCA(r.CACert, r.CAKey)
	if err != nil {
		return "", "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return "", "", err
	}
	var usage []x509.ExtKeyUsage
	if r.Server || !r.Client {
		usage = append(usage, x509.ExtKeyUsageServerAuth)
	}
	if r.Client || !r.Server {
		usage = append(usage, x509.ExtKeyUsageClientAuth)
	}
	now := time.Now()
	notAfter := now.Add(r.Validity)
	if notAfter.After(ca.Leaf.NotAfter) {
		notAfter = ca.Leaf.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cmp.Or(r.CommonName, r.Name)},
		DNSNames:              r.DNSNames,
		IPAddresses:           r.IPs,
		URIs:                  r.URIs,
		NotBefore:             now.Add(-Backdate),
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           usage,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Leaf, &key.PublicKey, ca.PrivateKey)
	if err != nil {
		return "", "", fmt.Errorf("create certificate: %w", err)
	}
	return writePair(r.Dir, r.Name, der, key)
}

// loadCA loads an issuing CA and checks that it may sign certificates now.
func loadCA(certFile, keyFile string) (tls.Certificate, error) {
	ca, err := loadKeyPair(certFile, keyFile)
	if err != nil {
		return ca, fmt.Errorf("load CA: %w", err)
	}
	c := ca.Leaf
	switch {
	case !c.BasicConstraintsValid || !c.IsCA:
		return ca, fmt.Errorf("%w: %s is not a CA certificate", ErrNotCA, certFile)
	case c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0:
		return ca, fmt.Errorf("%w: %s may not sign certificates", ErrNotCA, certFile)
	case time.Now().After(c.NotAfter):
		return ca, fmt.Errorf("%w: %s expired at %s", ErrNotCA, certFile, c.NotAfter.UTC().Format(time.RFC3339))
	}
	if _, ok := ca.PrivateKey.(crypto.Signer); !ok {
		return ca, fmt.Errorf("%w: the key in %s cannot sign", ErrNotCA, keyFile)
	}
	return ca, nil
}

// loadKeyPair loads a certificate and its matching private key, with Leaf set.
func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	if certFile == "" || keyFile == "" {
		return tls.Certificate{}, fmt.Errorf("%w: a certificate and its key are both required", ErrInvalid)
	}
	kp, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return kp, fmt.Errorf("%s and %s: %w", certFile, keyFile, err)
	}
	if kp.Leaf == nil {
		if kp.Leaf, err = x509.ParseCertificate(kp.Certificate[0]); err != nil {
			return kp, fmt.Errorf("%s: %w", certFile, err)
		}
	}
	return kp, nil
}

// loadPool reads every certificate in the PEM file into a new pool. Blocks of other types are
// skipped; a certificate that does not parse is an error, and so is a file without one.
func loadPool(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	n := 0
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNoCertificate, file)
	}
	return pool, nil
}

// checkOutput validates what CreateCA and CreateCert are asked to write.
func checkOutput(name string, validity time.Duration) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) ||
		filepath.Base(name) != name {
		return fmt.Errorf("%w: name %q must be a plain file name", ErrInvalid, name)
	}
	if validity <= 0 {
		return fmt.Errorf("%w: validity must be positive, not %s", ErrInvalid, validity)
	}
	return nil
}

// newSerial returns a random positive 128-bit serial number.
func newSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("generate serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// writePair writes the certificate der and key as <dir>/<name>.pem and <dir>/<name>-key.pem.
func writePair(dir, name string, der []byte, key *ecdsa.PrivateKey) (certPath, keyPath string, err error) {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", fmt.Errorf("encode key: %w", err)
	}
	if dir != "" {
		if err := os.MkdirAll(dir, dirMode); err != nil {
			return "", "", err
		}
	}
	certPath = filepath.Join(dir, name+".pem")
	keyPath = filepath.Join(dir, name+"-key.pem")
	err = writeNew(
		outFile{keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), keyMode},
		outFile{certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), certMode},
	)
	if err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

// outFile is a file for writeNew to create.
type outFile struct {
	path string
	data []byte
	mode os.FileMode
}

// writeNew creates the files in order, each only if it does not exist yet. If one exists
// (ErrExists) or cannot be written, the files it created are removed again.
func writeNew(files ...outFile) error {
	for _, f := range files {
		_, err := os.Lstat(f.path)
		if err == nil {
			return fmt.Errorf("%w: %s", ErrExists, f.path)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	for i, f := range files {
		if err := writeExclusive(f); err != nil {
			for _, done := range files[:i] {
				os.Remove(done.path)
			}
			return err
		}
	}
	return nil
}

// writeExclusive creates f.path with f.mode (less the umask), writes f.data and syncs it; on failure
// it leaves no file behind.
func writeExclusive(f outFile) error {
	fh, err := os.OpenFile(f.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.mode)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w: %s", ErrExists, f.path)
	}
	if err != nil {
		return err
	}
	_, err = fh.Write(f.data)
	if err == nil {
		err = fh.Sync()
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.path)
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	return nil
}
