package jwtauth

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const (
	// maxJWKSSize bounds a fetched or read JWKS document.
	maxJWKSSize = 1 << 20
	// unknownKidInterval is the minimum gap between refetches caused by a
	// token whose "kid" is not in the cached key set.
	unknownKidInterval = 10 * time.Second
	// fetchTimeout caps one fetch even if the HTTP client has no timeout.
	fetchTimeout = 30 * time.Second
	// minRSABits is the smallest RSA key accepted from a JWKS.
	minRSABits = 2048
)

// parseJWKS extracts the public signing keys from a JWKS document. Keys that
// go-jose cannot parse, encryption keys ("use":"enc"), symmetric keys and RSA
// keys under 2048 bits are skipped; private keys contribute their public half.
// It fails if no usable key remains.
func parseJWKS(data []byte) ([]jose.JSONWebKey, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, errors.New("not a JWKS JSON object")
	}
	if len(doc.Keys) == 0 {
		return nil, errors.New(`JWKS has no "keys"`)
	}
	var keys []jose.JSONWebKey
	for _, raw := range doc.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			continue
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if !k.Valid() {
			continue
		}
		pub := k.Public()
		if !pub.Valid() || !pub.IsPublic() {
			continue
		}
		if !keyFitsAnyAlgorithm(pub.Key) {
			continue
		}
		if r, ok := pub.Key.(*rsa.PublicKey); ok && r.N.BitLen() < minRSABits {
			continue
		}
		if pub.Algorithm != "" && !isSupportedAlgorithm(pub.Algorithm) {
			continue
		}
		keys = append(keys, pub)
	}
	if len(keys) == 0 {
		return nil, errors.New("JWKS has no usable signing key (RSA >= 2048 bits, EC P-256/384/521 or Ed25519)")
	}
	return keys, nil
}

func keyFitsAnyAlgorithm(key any) bool {
	for _, alg := range supportedAlgorithms {
		if keyFitsAlgorithm(key, alg) {
			return true
		}
	}
	return false
}

// jwksHasPrivateKey reports whether any key in a JWKS carries private ("d")
// or symmetric ("k") key material.
func jwksHasPrivateKey(data []byte) (bool, error) {
	var doc struct {
		Keys []map[string]json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return false, errors.New("not a JWKS JSON object")
	}
	for _, k := range doc.Keys {
		if _, ok := k["d"]; ok {
			return true, nil
		}
		if _, ok := k["k"]; ok {
			return true, nil
		}
	}
	return false, nil
}

type sourceKind int

const (
	sourceInline sourceKind = iota
	sourceFile
	sourceURL
)

// sourceID identifies a key source; key sets are shared and kept across
// SetIssuers calls by this identity.
type sourceID struct {
	kind sourceKind
	loc  string // file path, URL, or SHA-256 of the inline JWKS
}

func issuerSource(i Issuer) sourceID {
	switch {
	case i.JWKSFile != "":
		return sourceID{sourceFile, i.JWKSFile}
	case i.JWKSURL != "":
		return sourceID{sourceURL, i.JWKSURL}
	default:
		sum := sha256.Sum256([]byte(i.JWKS))
		return sourceID{sourceInline, hex.EncodeToString(sum[:])}
	}
}

// fetchConfig is the Verifier-wide, immutable configuration key sets use.
type fetchConfig struct {
	client  *http.Client
	refresh time.Duration
	now     func() time.Time
}

// retryInterval is the minimum gap between attempts after a failed fetch.
func (c *fetchConfig) retryInterval() time.Duration {
	return min(c.refresh, unknownKidInterval)
}

// keySet is the cached keys of one source. File and URL sets load lazily on
// first use, refresh in the background once older than the refresh interval,
// and refetch (waiting for it) on an unknown kid at most once per 10s. On a
// failed refresh the previous keys stay in use.
type keySet struct {
	id  sourceID
	cfg *fetchConfig

	mu        sync.Mutex
	keys      []jose.JSONWebKey
	loaded    bool
	fetchedAt time.Time     // end of the last successful fetch
	attemptAt time.Time     // start of the last fetch attempt
	lastErr   error         // result of the last attempt
	inflight  chan struct{} // non-nil while a fetch runs; closed when it ends
}

func newKeySet(id sourceID, cfg *fetchConfig, inline string) (*keySet, error) {
	ks := &keySet{id: id, cfg: cfg}
	if id.kind == sourceInline {
		keys, err := parseJWKS([]byte(inline))
		if err != nil {
			return nil, err
		}
		ks.keys, ks.loaded = keys, true
	}
	return ks, nil
}

type fetchReason int

const (
	reasonInitial fetchReason = iota
	reasonStale
	reasonUnknownKid
)

// maybeFetch starts a fetch if reason warrants one now, or joins a running
// one. It returns a channel closed when that fetch ends, or nil if no fetch
// is running or started.
func (ks *keySet) maybeFetch(ctx context.Context, reason fetchReason) <-chan struct{} {
	if ks.id.kind == sourceInline {
		return nil
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.inflight != nil {
		return ks.inflight
	}
	now := ks.cfg.now()
	sinceAttempt := now.Sub(ks.attemptAt)
	neverTried := ks.attemptAt.IsZero()
	var start bool
	switch reason {
	case reasonInitial:
		start = !ks.loaded && (neverTried || sinceAttempt >= ks.cfg.retryInterval())
	case reasonStale:
		start = ks.loaded && now.Sub(ks.fetchedAt) >= ks.cfg.refresh && sinceAttempt >= ks.cfg.retryInterval()
	case reasonUnknownKid:
		start = neverTried || sinceAttempt >= unknownKidInterval
	}
	if !start {
		return nil
	}
	ch := make(chan struct{})
	ks.inflight = ch
	ks.attemptAt = now
	// The fetch outlives the request that triggered it (other requests may be
	// waiting for it), so it keeps ctx's values but not its cancellation.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	go func() {
		defer cancel()
		keys, err := ks.load(fctx)
		done := ks.cfg.now()
		ks.mu.Lock()
		if err == nil {
			ks.keys, ks.loaded, ks.fetchedAt = keys, true, done
		}
		ks.lastErr = err
		ks.inflight = nil
		ks.mu.Unlock()
		close(ch)
	}()
	return ch
}

// load reads the JWKS from the file or URL.
func (ks *keySet) load(ctx context.Context) ([]jose.JSONWebKey, error) {
	var data []byte
	var err error
	switch ks.id.kind {
	case sourceFile:
		data, err = readFileLimited(ks.id.loc)
		if err != nil {
			return nil, fmt.Errorf("reading JWKS file: %w", err)
		}
	case sourceURL:
		data, err = fetchURL(ctx, ks.cfg.client, ks.id.loc)
		if err != nil {
			return nil, fmt.Errorf("fetching JWKS: %w", err)
		}
	default:
		return nil, errors.New("inline JWKS is not reloadable")
	}
	keys, err := parseJWKS(data)
	if err != nil {
		return nil, fmt.Errorf("JWKS from %s: %w", ks.id.loc, err)
	}
	return keys, nil
}

func readFileLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readLimited(f)
}

func fetchURL(ctx context.Context, client *http.Client, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("GET %s: unexpected status %s", u, resp.Status)
	}
	return readLimited(resp.Body)
}

func readLimited(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxJWKSSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxJWKSSize {
		return nil, fmt.Errorf("JWKS larger than %d bytes", maxJWKSSize)
	}
	return data, nil
}

// candidates returns the keys that may have signed a token with this kid and
// alg, loading or refetching the set as needed. Errors wrap ErrSignature
// (no such key) or ErrKeysUnavailable (keys could not be loaded).
func (ks *keySet) candidates(ctx context.Context, kid string, alg jose.SignatureAlgorithm) ([]jose.JSONWebKey, error) {
	if err := wait(ctx, ks.maybeFetch(ctx, reasonInitial)); err != nil {
		return nil, err
	}
	// A stale set is refreshed in the background; this request uses the
	// current keys.
	ks.maybeFetch(ctx, reasonStale)

	keys, loaded, lastErr := ks.snapshot()
	if !loaded {
		return nil, fmt.Errorf("%w: %w", ErrKeysUnavailable, lastErrOr(lastErr))
	}
	found := matchKeys(keys, kid, alg)
	if len(found) == 0 && kid != "" {
		if ch := ks.maybeFetch(ctx, reasonUnknownKid); ch != nil {
			if err := wait(ctx, ch); err != nil {
				return nil, err
			}
			keys, _, lastErr = ks.snapshot()
			found = matchKeys(keys, kid, alg)
		}
		if len(found) == 0 && lastErr != nil {
			return nil, fmt.Errorf("%w: key %s not cached and refetch failed: %w", ErrKeysUnavailable, quoteShort(kid), lastErr)
		}
	}
	if len(found) == 0 {
		if kid == "" {
			return nil, fmt.Errorf("%w: no %s key in the issuer's key set", ErrSignature, alg)
		}
		return nil, fmt.Errorf("%w: no %s key with kid %s in the issuer's key set", ErrSignature, alg, quoteShort(kid))
	}
	return found, nil
}

func (ks *keySet) snapshot() (keys []jose.JSONWebKey, loaded bool, lastErr error) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return ks.keys, ks.loaded, ks.lastErr
}

func lastErrOr(err error) error {
	if err != nil {
		return err
	}
	return errors.New("not loaded yet")
}

// wait blocks until ch is closed (nil ch: no wait) or ctx ends.
func wait(ctx context.Context, ch <-chan struct{}) error {
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: waiting for key fetch: %w", ErrKeysUnavailable, ctx.Err())
	}
}

// matchKeys returns the keys with this kid (any key if kid is empty) that
// can verify alg and whose own "alg", if set, is alg.
func matchKeys(keys []jose.JSONWebKey, kid string, alg jose.SignatureAlgorithm) []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for _, k := range keys {
		if kid != "" && k.KeyID != kid {
			continue
		}
		if k.Algorithm != "" && k.Algorithm != string(alg) {
			continue
		}
		if !keyFitsAlgorithm(k.Key, alg) {
			continue
		}
		out = append(out, k)
	}
	return out
}
