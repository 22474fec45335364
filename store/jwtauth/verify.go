package jwtauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const (
	// leeway is the clock skew allowed when checking exp, nbf and iat.
	leeway = 60 * time.Second
	// maxTokenSize bounds the token text Verify accepts.
	maxTokenSize = 64 << 10

	defaultRefresh       = 5 * time.Minute
	defaultClientTimeout = 10 * time.Second
)

// Verifier verifies tokens against the configured issuers. It is safe for
// concurrent use; SetIssuers may run concurrently with Verify.
type Verifier struct {
	cfg   *fetchConfig
	setMu sync.Mutex // serializes SetIssuers
	table atomic.Pointer[issuerTable]
}

type issuerTable struct {
	byIss   map[string][]*issuerEntry // by "iss" value; entries sorted by Name
	keySets map[sourceID]*keySet
}

type issuerEntry struct {
	cfg  Issuer
	algs []jose.SignatureAlgorithm
	keys *keySet
}

// NewVerifier builds a verifier. now defaults to time.Now; client is used for JWKSURL (default: 10s timeout client); refresh is how often keys are refetched (default 5m; also refetch at most once per 10s on an unknown kid).
func NewVerifier(client *http.Client, refresh time.Duration, now func() time.Time) *Verifier {
	if client == nil {
		client = &http.Client{Timeout: defaultClientTimeout}
	}
	if refresh <= 0 {
		refresh = defaultRefresh
	}
	if now == nil {
		now = time.Now
	}
	v := &Verifier{cfg: &fetchConfig{client: client, refresh: refresh, now: now}}
	v.table.Store(&issuerTable{byIss: map[string][]*issuerEntry{}, keySets: map[sourceID]*keySet{}})
	return v
}

// SetIssuers replaces the issuer set (called whenever the replicated config changes); keys already fetched for unchanged issuers are kept.
//
// Keys are cached per key source (inline JWKS content, file path or URL), so
// an issuer whose source is unchanged keeps its keys even if other fields
// change. Invalid issuers and all issuers sharing a duplicated Name are left
// out (fail closed) while the rest are installed; the returned error, which
// wraps ErrInvalidIssuer, lists what was left out. Several issuers may share
// one "iss" value (e.g. clusters with the default Kubernetes issuer); a token
// is then accepted by the first of them, in Name order, that accepts it.
func (v *Verifier) SetIssuers(issuers []Issuer) error {
	v.setMu.Lock()
	defer v.setMu.Unlock()
	old := v.table.Load()

	count := map[string]int{}
	for _, is := range issuers {
		count[is.Name]++
	}
	var errs []error
	next := &issuerTable{byIss: map[string][]*issuerEntry{}, keySets: map[sourceID]*keySet{}}
	for _, is := range issuers {
		if err := is.Validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		if count[is.Name] > 1 {
			errs = append(errs, fmt.Errorf("%w %q: name is used by %d issuers; all of them are ignored", ErrInvalidIssuer, is.Name, count[is.Name]))
			count[is.Name] = -1 // report once
			continue
		}
		if count[is.Name] < 0 {
			continue
		}
		is = cloneIssuer(is)
		id := issuerSource(is)
		ks := next.keySets[id]
		if ks == nil {
			ks = old.keySets[id]
		}
		if ks == nil {
			var err error
			if ks, err = newKeySet(id, v.cfg, is.JWKS); err != nil {
				errs = append(errs, fmt.Errorf("%w %q: jwks: %w", ErrInvalidIssuer, is.Name, err))
				continue
			}
		}
		next.keySets[id] = ks
		next.byIss[is.Issuer] = append(next.byIss[is.Issuer], &issuerEntry{cfg: is, algs: is.algorithms(), keys: ks})
	}
	for _, entries := range next.byIss {
		sort.Slice(entries, func(a, b int) bool { return entries[a].cfg.Name < entries[b].cfg.Name })
	}
	v.table.Store(next)
	return errors.Join(errs...)
}

func cloneIssuer(i Issuer) Issuer {
	i.Audiences = slices.Clone(i.Audiences)
	i.Algorithms = slices.Clone(i.Algorithms)
	i.BoundClaims = maps.Clone(i.BoundClaims)
	return i
}

// Verify checks signature, iss, aud, exp/nbf, bound claims and returns the identity. It never includes the token text in errors.
func (v *Verifier) Verify(ctx context.Context, token string) (Identity, error) {
	token = strings.TrimSpace(token)
	if token == "" {
		return Identity{}, fmt.Errorf("%w: empty token", ErrMalformed)
	}
	if len(token) > maxTokenSize {
		return Identity{}, fmt.Errorf("%w: token longer than %d bytes", ErrMalformed, maxTokenSize)
	}
	if parts := strings.Count(token, ".") + 1; parts != 3 {
		if parts == 5 {
			return Identity{}, fmt.Errorf("%w: encrypted tokens (JWE) are not supported", ErrMalformed)
		}
		return Identity{}, fmt.Errorf("%w: expected 3 dot-separated parts, got %d", ErrMalformed, parts)
	}
	sig, err := jose.ParseSignedCompact(token, supportedAlgorithms)
	if err != nil {
		// go-jose's parse errors are not passed on: they could quote input.
		var badAlg *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &badAlg) {
			return Identity{}, fmt.Errorf("%w: algorithm %s is not accepted", ErrSignature, quoteShort(string(badAlg.Got)))
		}
		return Identity{}, fmt.Errorf("%w: not a compact JWS (base64url header, payload and signature with a JSON header)", ErrMalformed)
	}
	if len(sig.Signatures) != 1 {
		return Identity{}, fmt.Errorf("%w: expected exactly one signature", ErrMalformed)
	}
	header := sig.Signatures[0].Header
	alg := jose.SignatureAlgorithm(header.Algorithm)

	// The issuer picks the keys, so it is read before the signature is
	// checked; everything else is read only from the verified payload.
	var unverified map[string]any
	if err := json.Unmarshal(sig.UnsafePayloadWithoutVerification(), &unverified); err != nil || unverified == nil {
		return Identity{}, fmt.Errorf("%w: claims are not a JSON object", ErrMalformed)
	}
	iss, ok := unverified["iss"].(string)
	if !ok || iss == "" {
		return Identity{}, fmt.Errorf("%w: token has no iss claim", ErrUnknownIssuer)
	}
	entries := v.table.Load().byIss[iss]
	if len(entries) == 0 {
		return Identity{}, fmt.Errorf("%w: issuer %s is not configured", ErrUnknownIssuer, quoteShort(iss))
	}

	var best error
	bestRank := -1
	for _, e := range entries {
		id, rank, err := v.verifyWith(ctx, e, sig, alg, header.KeyID)
		if err == nil {
			return id, nil
		}
		if rank > bestRank {
			best, bestRank = err, rank
		}
	}
	return Identity{}, best
}

// Ranks order the failures of the issuers sharing an "iss": the error from
// the issuer the token got furthest with is returned.
const (
	rankSignature = iota
	rankUnavailable
	rankTime
	rankAudience
	rankClaims
	rankMalformed
)

func (v *Verifier) verifyWith(ctx context.Context, e *issuerEntry, sig *jose.JSONWebSignature, alg jose.SignatureAlgorithm, kid string) (Identity, int, error) {
	name := e.cfg.Name
	if !slices.Contains(e.algs, alg) {
		return Identity{}, rankSignature, fmt.Errorf("%w: algorithm %s is not allowed for issuer %q", ErrSignature, alg, name)
	}
	keys, err := e.keys.candidates(ctx, kid, alg)
	if err != nil {
		rank := rankSignature
		if errors.Is(err, ErrKeysUnavailable) {
			rank = rankUnavailable
		}
		return Identity{}, rank, fmt.Errorf("issuer %q: %w", name, err)
	}
	var payload []byte
	for _, k := range keys {
		if p, err := sig.Verify(k.Key); err == nil {
			payload = p
			break
		}
	}
	if payload == nil {
		return Identity{}, rankSignature, fmt.Errorf("%w: no key of issuer %q verifies the signature", ErrSignature, name)
	}

	// "sub" is read from the claims map below, so a non-string "sub" is a
	// claims problem (ErrClaims), not a malformed token.
	var reg struct {
		Issuer    string           `json:"iss"`
		Audience  jwt.Audience     `json:"aud"`
		Expiry    *jwt.NumericDate `json:"exp"`
		NotBefore *jwt.NumericDate `json:"nbf"`
		IssuedAt  *jwt.NumericDate `json:"iat"`
	}
	if err := json.Unmarshal(payload, &reg); err != nil {
		return Identity{}, rankMalformed, fmt.Errorf("%w: iss, aud, exp, nbf or iat has the wrong type", ErrMalformed)
	}
	std := jwt.Claims{Issuer: reg.Issuer, Audience: reg.Audience, Expiry: reg.Expiry, NotBefore: reg.NotBefore, IssuedAt: reg.IssuedAt}
	var claims map[string]any
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil || claims == nil {
		return Identity{}, rankMalformed, fmt.Errorf("%w: claims are not a JSON object", ErrMalformed)
	}
	if std.Issuer != e.cfg.Issuer {
		return Identity{}, rankSignature, fmt.Errorf("%w: issuer mismatch", ErrUnknownIssuer)
	}

	if std.Expiry == nil {
		return Identity{}, rankTime, fmt.Errorf("%w: token has no exp claim", ErrClaims)
	}
	now := v.cfg.now()
	if err := std.ValidateWithLeeway(jwt.Expected{Time: now}, leeway); err != nil {
		switch {
		case errors.Is(err, jwt.ErrExpired):
			err = fmt.Errorf("%w: token expired at %s", ErrExpired, std.Expiry.Time().UTC().Format(time.RFC3339))
		case errors.Is(err, jwt.ErrNotValidYet):
			err = fmt.Errorf("%w: token not valid before %s", ErrExpired, std.NotBefore.Time().UTC().Format(time.RFC3339))
		case errors.Is(err, jwt.ErrIssuedInTheFuture):
			err = fmt.Errorf("%w: token issued in the future (%s)", ErrExpired, std.IssuedAt.Time().UTC().Format(time.RFC3339))
		default:
			err = fmt.Errorf("%w: time claims rejected", ErrExpired)
		}
		return Identity{}, rankTime, err
	}

	audOK := false
	for _, a := range e.cfg.Audiences {
		if std.Audience.Contains(a) {
			audOK = true
			break
		}
	}
	if !audOK {
		return Identity{}, rankAudience, fmt.Errorf("%w: token audience includes none of issuer %q's audiences", ErrAudience, name)
	}

	pc := e.cfg.principalClaim()
	pv, ok := lookupClaim(claims, pc)
	if !ok {
		return Identity{}, rankClaims, fmt.Errorf("%w: principal claim %q is missing", ErrClaims, pc)
	}
	principal, ok := pv.(string)
	if !ok || principal == "" {
		return Identity{}, rankClaims, fmt.Errorf("%w: principal claim %q is not a non-empty string", ErrClaims, pc)
	}

	var subject string
	if sv, ok := claims["sub"]; ok {
		if subject, ok = sv.(string); !ok {
			return Identity{}, rankClaims, fmt.Errorf("%w: sub claim is not a string", ErrClaims)
		}
	}

	for _, bc := range slices.Sorted(maps.Keys(e.cfg.BoundClaims)) {
		got, ok := lookupClaim(claims, bc)
		if !ok {
			return Identity{}, rankClaims, fmt.Errorf("%w: bound claim %q is missing", ErrClaims, bc)
		}
		if !boundMatches(got, e.cfg.BoundClaims[bc]) {
			return Identity{}, rankClaims, fmt.Errorf("%w: bound claim %q does not match", ErrClaims, bc)
		}
	}

	return Identity{
		Issuer:    name,
		Principal: principal,
		Subject:   subject,
		Expiry:    std.Expiry.Time(),
	}, 0, nil
}

// quoteShort quotes a token-supplied value for an error message, cut to 64 bytes.
func quoteShort(s string) string {
	const max = 64
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}
