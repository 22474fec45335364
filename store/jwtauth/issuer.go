package jwtauth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// Issuer is one trusted token issuer (stored replicated in the cluster; JSON-encoded).
type Issuer struct {
	Name           string            `json:"name"`                      // keyward's name for it, e.g. "k8s-prod"
	Issuer         string            `json:"issuer"`                    // required "iss" value
	JWKS           string            `json:"jwks,omitempty"`            // inline JWKS JSON
	JWKSFile       string            `json:"jwks_file,omitempty"`       // path read on each refresh
	JWKSURL        string            `json:"jwks_url,omitempty"`        // fetched over HTTP(S), refreshed
	Audiences      []string          `json:"audiences"`                 // token must carry at least one
	PrincipalClaim string            `json:"principal_claim,omitempty"` // claim naming the principal; default "sub"
	BoundClaims    map[string]string `json:"bound_claims,omitempty"`    // each claim must equal the value ("*" suffix = prefix match)
	Algorithms     []string          `json:"algorithms,omitempty"`      // default RS256, ES256
}

const maxNameLen = 128

// defaultAlgorithms is used when Issuer.Algorithms is empty.
var defaultAlgorithms = []jose.SignatureAlgorithm{jose.RS256, jose.ES256}

// supportedAlgorithms are the asymmetric JWS algorithms an issuer may allow.
// Symmetric (HS*) algorithms and "none" are deliberately absent.
var supportedAlgorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.EdDSA,
}

func isSupportedAlgorithm(alg string) bool {
	for _, a := range supportedAlgorithms {
		if string(a) == alg {
			return true
		}
	}
	return false
}

// keyFitsAlgorithm reports whether a public key can verify signatures made
// with alg (key type and, for ECDSA, curve).
func keyFitsAlgorithm(key any, alg jose.SignatureAlgorithm) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		switch alg {
		case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
			return true
		}
	case *ecdsa.PublicKey:
		switch alg {
		case jose.ES256:
			return k.Curve == elliptic.P256()
		case jose.ES384:
			return k.Curve == elliptic.P384()
		case jose.ES512:
			return k.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == jose.EdDSA
	}
	return false
}

// Validate checks an Issuer config (exactly one JWKS source, issuer and audiences non-empty, known algorithms) — used before it is stored.
//
// It also checks that the name is 1-128 characters of [A-Za-z0-9._-], that an
// inline JWKS parses, holds at least one usable signing key and no private key
// material, that JWKSFile is an absolute path, that JWKSURL is an http(s) URL,
// and that claim names and bound values are non-empty. Errors wrap
// ErrInvalidIssuer.
func (i Issuer) Validate() error {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	switch {
	case i.Name == "":
		add("name is required")
	case len(i.Name) > maxNameLen:
		add("name is longer than %d characters", maxNameLen)
	case !validName(i.Name):
		add("name %q may contain only letters, digits, '.', '_' and '-'", i.Name)
	}
	if strings.TrimSpace(i.Issuer) == "" {
		add("issuer is required")
	} else if i.Issuer != strings.TrimSpace(i.Issuer) {
		add("issuer has leading or trailing whitespace")
	}

	sources := 0
	if i.JWKS != "" {
		sources++
		if err := validateInlineJWKS(i.JWKS); err != nil {
			add("jwks: %v", err)
		}
	}
	if i.JWKSFile != "" {
		sources++
		if !filepath.IsAbs(i.JWKSFile) {
			add("jwks_file must be an absolute path")
		}
	}
	if i.JWKSURL != "" {
		sources++
		if err := validateJWKSURL(i.JWKSURL); err != nil {
			add("jwks_url: %v", err)
		}
	}
	if sources != 1 {
		add("exactly one of jwks, jwks_file and jwks_url is required (got %d)", sources)
	}

	if len(i.Audiences) == 0 {
		add("at least one audience is required")
	}
	for _, a := range i.Audiences {
		if strings.TrimSpace(a) == "" {
			add("audiences must not contain an empty value")
			break
		}
	}

	if i.PrincipalClaim != "" {
		if err := validateClaimName(i.PrincipalClaim); err != nil {
			add("principal_claim: %v", err)
		}
	}
	for name, want := range i.BoundClaims {
		if err := validateClaimName(name); err != nil {
			add("bound_claims: %v", err)
		}
		if want == "" {
			add("bound_claims: value for %q is empty (use \"*\" to require only presence)", name)
		}
	}

	for _, alg := range i.Algorithms {
		if !isSupportedAlgorithm(alg) {
			add("algorithm %q is not supported (supported: %s)", alg, supportedAlgorithmList())
		}
	}

	if len(problems) == 0 {
		return nil
	}
	name := i.Name
	if name == "" {
		name = "(unnamed)"
	}
	return fmt.Errorf("%w %q: %s", ErrInvalidIssuer, name, strings.Join(problems, "; "))
}

// algorithms returns the issuer's allowed algorithms (default RS256, ES256).
// Call only on a validated Issuer.
func (i Issuer) algorithms() []jose.SignatureAlgorithm {
	if len(i.Algorithms) == 0 {
		return defaultAlgorithms
	}
	out := make([]jose.SignatureAlgorithm, 0, len(i.Algorithms))
	for _, a := range i.Algorithms {
		out = append(out, jose.SignatureAlgorithm(a))
	}
	return out
}

func (i Issuer) principalClaim() string {
	if i.PrincipalClaim == "" {
		return "sub"
	}
	return i.PrincipalClaim
}

func supportedAlgorithmList() string {
	names := make([]string, len(supportedAlgorithms))
	for n, a := range supportedAlgorithms {
		names[n] = string(a)
	}
	return strings.Join(names, ", ")
}

func validName(s string) bool {
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return false
		}
	}
	return true
}

func validateClaimName(name string) error {
	if strings.TrimSpace(name) == "" {
		return errors.New("claim name is empty")
	}
	if strings.HasPrefix(name, "/") {
		if _, err := splitPointer(name); err != nil {
			return err
		}
	}
	return nil
}

func validateJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a valid URL")
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return errors.New("scheme must be https or http")
	}
	if u.Host == "" {
		return errors.New("host is missing")
	}
	if u.User != nil {
		return errors.New("must not contain user credentials")
	}
	return nil
}

// validateInlineJWKS checks an inline JWKS: it must yield a usable key and,
// since it is replicated to every node, must not carry private key material.
func validateInlineJWKS(s string) error {
	if _, err := parseJWKS([]byte(s)); err != nil {
		return err
	}
	priv, err := jwksHasPrivateKey([]byte(s))
	if err != nil {
		return err
	}
	if priv {
		return errors.New("contains private key material; store only public keys")
	}
	return nil
}
