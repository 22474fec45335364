package client

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// ErrInvalidTLS: a TLS file setting is incomplete (a certificate without its key, or the
// reverse) or a CA file holds no certificate.
var ErrInvalidTLS = errors.New("invalid TLS settings")

// TLSFiles names the PEM files of a client's TLS settings.
type TLSFiles struct {
	// CAFile holds the CA certificates that verify the servers; empty uses the system roots.
	CAFile string
	// CertFile and KeyFile, when set, are a client certificate presented to servers that ask
	// for one: with it the client authenticates by mutual TLS and needs no token.
	CertFile, KeyFile string
	// ServerName overrides the host name the server certificate is checked against.
	ServerName string
}

// Config returns a TLS 1.2+ client configuration from the files. The client certificate is
// loaded now (an error if it cannot be) and read again at a later handshake when either file
// changed, so a renewed certificate is used by new connections without a restart; if the new
// files cannot be loaded (for instance half written), the last good certificate is kept.
func (f TLSFiles) Config() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.ServerName}
	if f.CAFile != "" {
		pem, err := os.ReadFile(f.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: CA file %s holds no PEM certificate", ErrInvalidTLS, f.CAFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case f.CertFile == "" && f.KeyFile == "":
		return cfg, nil
	case f.CertFile == "" || f.KeyFile == "":
		return nil, fmt.Errorf("%w: a client certificate needs both a certificate and a key file", ErrInvalidTLS)
	}
	r := &certReloader{certFile: f.CertFile, keyFile: f.KeyFile}
	if err := r.load(); err != nil {
		return nil, err
	}
	cfg.GetClientCertificate = r.get
	return cfg, nil
}

// certReloader holds a client certificate and reloads it when its files change.
type certReloader struct {
	certFile, keyFile string

	mu       sync.Mutex // guards the fields below
	cert     *tls.Certificate
	certStat fileStamp
	keyStat  fileStamp
}

// fileStamp identifies a version of a file by its modification time and size.
type fileStamp struct {
	mod  time.Time
	size int64
}

func stampOf(file string) (fileStamp, error) {
	fi, err := os.Stat(file)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{mod: fi.ModTime(), size: fi.Size()}, nil
}

// load reads the certificate and key.
func (r *certReloader) load() error {
	cs, err := stampOf(r.certFile)
	if err != nil {
		return fmt.Errorf("client certificate: %w", err)
	}
	ks, err := stampOf(r.keyFile)
	if err != nil {
		return fmt.Errorf("client key: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("client certificate: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cert, r.certStat, r.keyStat = &cert, cs, ks
	return nil
}

// get is the tls.Config GetClientCertificate hook.
func (r *certReloader) get(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	cs, err1 := stampOf(r.certFile)
	ks, err2 := stampOf(r.keyFile)
	r.mu.Lock()
	changed := err1 == nil && err2 == nil && (cs != r.certStat || ks != r.keyStat)
	r.mu.Unlock()
	if changed {
		_ = r.load() // on failure keep the last good certificate
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cert, nil
}
