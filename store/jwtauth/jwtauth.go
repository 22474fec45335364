// Package jwtauth verifies JSON Web Tokens against configured issuers and maps their claims to a keyward principal.
//
// It is meant for workload identity: a Kubernetes service account token or a
// cloud provider's OIDC token is presented to keyward, which checks it against
// an [Issuer] (signature with the issuer's JWKS, "iss", "aud", "exp"/"nbf"/"iat",
// bound claims) and returns an [Identity].
//
// Claim names in [Issuer.PrincipalClaim] and [Issuer.BoundClaims] name a
// top-level claim, or, when they start with "/", a JSON Pointer (RFC 6901)
// into the claims, e.g. "/kubernetes.io/namespace".
//
// Every error returned by [Verifier.Verify] wraps exactly one of the sentinel
// errors below, and never contains the token text.
package jwtauth

import (
	"errors"
	"time"
)

// Sentinel errors. Verify wraps one of them with %w; Validate and SetIssuers
// wrap ErrInvalidIssuer.
var (
	// ErrMalformed: the token is not a compact JWS with a JSON claims object.
	ErrMalformed = errors.New("jwtauth: malformed token")
	// ErrUnknownIssuer: the token's "iss" is missing or not configured.
	ErrUnknownIssuer = errors.New("jwtauth: unknown token issuer")
	// ErrSignature: the algorithm is not accepted, or no key of the issuer
	// verifies the signature (including an unknown "kid" after a refetch).
	ErrSignature = errors.New("jwtauth: invalid token signature")
	// ErrExpired: "exp" has passed, or "nbf"/"iat" is in the future (60s leeway).
	ErrExpired = errors.New("jwtauth: token expired or not yet valid")
	// ErrAudience: no configured audience is in the token's "aud".
	ErrAudience = errors.New("jwtauth: token audience not accepted")
	// ErrClaims: a bound claim does not match, the principal claim is missing
	// or not a non-empty string, or the token has no "exp".
	ErrClaims = errors.New("jwtauth: token claims not accepted")
	// ErrKeysUnavailable: the issuer's keys could not be loaded (JWKS URL or
	// file unreachable or invalid), so the token could not be checked. This
	// is a server-side condition, not a bad token.
	ErrKeysUnavailable = errors.New("jwtauth: issuer keys unavailable")
	// ErrInvalidIssuer: an Issuer configuration is invalid.
	ErrInvalidIssuer = errors.New("jwtauth: invalid issuer config")
)

// Identity is what a verified token proves.
type Identity struct {
	Issuer    string // the Issuer.Name
	Principal string // value of PrincipalClaim, e.g. "system:serviceaccount:ns:name"
	Subject   string
	Expiry    time.Time
}
