package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// Peer is the mutual-TLS material of a cluster node: its certificate and the cluster CA pool.
//
// Cluster identity is "holds a certificate from the cluster CA": peers authenticate each other
// by the chain to the CA (and the certificate's extended key usage), never by host name.
type Peer struct {
	cert tls.Certificate
	pool *x509.CertPool
}

// LoadPeer loads a node's certificate and key and the cluster CA certificates (PEM). It checks
// that the node certificate chains to the CA and may be used both as a server and as a client,
// so that a misissued certificate fails here rather than in every handshake.
func LoadPeer(certFile, keyFile, caFile string) (*Peer, error) {
	cert, err := loadKeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load node certificate: %w", err)
	}
	pool, err := loadPool(caFile)
	if err != nil {
		return nil, fmt.Errorf("load cluster CA: %w", err)
	}
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if err := verifyChain(cert.Leaf, certChain(cert.Certificate[1:]), pool, u); err != nil {
			return nil, fmt.Errorf("node certificate %s: %w", certFile, err)
		}
	}
	return &Peer{cert: cert, pool: pool}, nil
}

// ServerConfig returns the configuration for a cluster listener: TLS 1.3 only; it presents the
// node certificate and requires every client to present one that chains to the cluster CA
// with client-auth usage.
func (p *Peer) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{p.cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.pool,
	}
}

// ClientConfig returns the configuration for dialing another node: TLS 1.3 only; it presents
// the node certificate and accepts a server only if the server's certificate chains to the
// cluster CA with server-auth usage.
//
// The server's host name or IP address is deliberately NOT checked, not even if the caller sets
// ServerName: peers are dialed by IP:port, which across NAT and proxies need not be in the
// certificate's SANs. Any holder of a certificate from the cluster CA (with server-auth usage)
// is accepted as a cluster node, so the CA must issue certificates to cluster nodes only.
// Standard verification is switched off (InsecureSkipVerify) and replaced by the chain check
// in VerifyConnection, which also runs on resumed sessions.
func (p *Peer) ClientConfig() *tls.Config {
	pool := p.pool
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{p.cert},
		InsecureSkipVerify: true, // replaced by VerifyConnection: the chain, not the host name
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("certs: server presented no certificate")
			}
			leaf := cs.PeerCertificates[0]
			return verifyChain(leaf, cs.PeerCertificates[1:], pool, x509.ExtKeyUsageServerAuth)
		},
	}
}

// apiCipherSuites are the TLS 1.2 suites the API offers: forward-secret AEAD only. TLS 1.3
// suites are not configurable and always allowed.
var apiCipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// APIServerConfig returns the configuration for the HTTP API listener: TLS 1.2 or later (1.3
// is negotiated whenever the client supports it; 1.2 only with forward-secret AEAD suites),
// presenting the certificate in certFile. The certificate may come from the cluster CA or any
// other CA, and may be RSA or ECDSA.
//
// If clientCAFile is empty, clients are not asked for a certificate. Otherwise they are asked,
// but may decline: a client certificate that is presented must chain to a CA in clientCAFile
// (for example an organisation's CA) with client-auth usage, or the handshake fails. Whether a
// request without one is allowed is for the HTTP layer to decide (r.TLS.VerifiedChains).
func APIServerConfig(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	cert, err := loadKeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load API certificate: %w", err)
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: apiCipherSuites,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.NoClientCert,
	}
	if clientCAFile != "" {
		pool, err := loadPool(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("load client CA: %w", err)
		}
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		cfg.ClientCAs = pool
	}
	return cfg, nil
}

// ClientTLS returns a client configuration for the CLI and SDKs talking to the HTTP API:
// TLS 1.2 or later, verifying the server's certificate and host name against the CA
// certificates in caFile, or against the system roots if caFile is empty. If certFile and
// keyFile are given, that certificate is presented to servers that ask; giving only one of
// them is an error (ErrInvalid).
func ClientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := loadPool(caFile)
		if err != nil {
			return nil, fmt.Errorf("load CA: %w", err)
		}
		cfg.RootCAs = pool
	}
	if certFile != "" || keyFile != "" {
		cert, err := loadKeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// verifyChain checks that leaf chains to a certificate in roots, through intermediates, and
// may be used for usage. No host name is checked.
func verifyChain(leaf *x509.Certificate, intermediates []*x509.Certificate, roots *x509.CertPool, usage x509.ExtKeyUsage) error {
	inter := x509.NewCertPool()
	for _, c := range intermediates {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	})
	if err != nil {
		return fmt.Errorf("certs: certificate %q fails verification against the cluster CA: %w", leaf.Subject.CommonName, err)
	}
	return nil
}

// certChain parses DER certificates; ones that do not parse are left out (the verification
// that uses them then fails).
func certChain(ders [][]byte) []*x509.Certificate {
	var out []*x509.Certificate
	for _, d := range ders {
		if c, err := x509.ParseCertificate(d); err == nil {
			out = append(out, c)
		}
	}
	return out
}
