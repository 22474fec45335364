package jwtauth

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

func TestVerifyValidTokens(t *testing.T) {
	rs := rsaKey(0, "rsa-1")
	es := ecKey(t, "ec-1")
	ed := edKey(t, "ed-1")
	keys := jwksJSON(t, rs, es, ed)

	sources := map[string]func(t *testing.T) (Issuer, *http.Client){
		"inline": func(t *testing.T) (Issuer, *http.Client) {
			is := baseIssuer("k8s-inline")
			is.JWKS = keys
			return is, nil
		},
		"file": func(t *testing.T) (Issuer, *http.Client) {
			is := baseIssuer("k8s-file")
			is.JWKSFile = tempJWKSFile(t, keys)
			return is, nil
		},
		"url": func(t *testing.T) (Issuer, *http.Client) {
			srv := newJWKSServer(t, keys)
			is := baseIssuer("k8s-url")
			is.JWKSURL = srv.url()
			return is, srv.srv.Client()
		},
	}
	for srcName, mk := range sources {
		for _, k := range []testKey{rs, es, ed} {
			t.Run(srcName+"/"+string(k.alg), func(t *testing.T) {
				clock := newClock()
				is, client := mk(t)
				is.Algorithms = []string{"RS256", "ES256", "EdDSA"}
				v := NewVerifier(client, 0, clock.Now)
				mustSet(t, v, is)
				now := clock.Now()
				id, err := verify(v, k.sign(t, claimsAt(now)))
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				want := Identity{Issuer: is.Name, Principal: testSub, Subject: testSub, Expiry: now.Add(10 * time.Minute)}
				if !id.Expiry.Equal(want.Expiry) {
					t.Fatalf("expiry %v, want %v", id.Expiry, want.Expiry)
				}
				id.Expiry = want.Expiry
				if id != want {
					t.Fatalf("identity %+v, want %+v", id, want)
				}
			})
		}
	}
}

func TestVerifyDefaultAlgorithms(t *testing.T) {
	clock := newClock()
	rs, es, ed := rsaKey(0, "r"), ecKey(t, "e"), edKey(t, "d")
	is := baseIssuer("k8s")
	is.JWKS = jwksJSON(t, rs, es, ed)
	v := NewVerifier(nil, 0, clock.Now)
	mustSet(t, v, is)
	for _, k := range []testKey{rs, es} {
		if _, err := verify(v, k.sign(t, claimsAt(clock.Now()))); err != nil {
			t.Fatalf("%s: %v", k.alg, err)
		}
	}
	tok := ed.sign(t, claimsAt(clock.Now()))
	_, err := verify(v, tok)
	checkErr(t, err, ErrSignature, tok)
}

func TestVerifyRejections(t *testing.T) {
	clock := newClock()
	now := clock.Now()
	good := rsaKey(0, "k1")
	other := rsaKey(1, "k1") // same kid, different key
	ec := ecKey(t, "ec")

	is := baseIssuer("k8s")
	is.JWKS = jwksJSON(t, good, ec)
	is.Algorithms = []string{"RS256"}
	is.BoundClaims = map[string]string{
		"/kubernetes.io/namespace": "payments",
		"sub":                      "system:serviceaccount:payments:*",
	}
	v := NewVerifier(nil, 0, clock.Now)
	mustSet(t, v, is)

	pubDER, err := x509.MarshalPKIXPublicKey(good.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	hmacWith := func(secret []byte) string {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: jose.JSONWebKey{Key: secret, KeyID: "k1"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jwt.Signed(signer).Claims(claimsAt(now)).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	b64 := base64.RawURLEncoding.EncodeToString
	goodTok := good.sign(t, claimsAt(now))
	goodParts := strings.Split(goodTok, ".")
	payloadJSON, _ := base64.RawURLEncoding.DecodeString(goodParts[1])

	cases := []struct {
		name  string
		token string
		want  error
	}{
		{"forged signature same kid", other.sign(t, claimsAt(now)), ErrSignature},
		{"signature of other token", goodParts[0] + "." + goodParts[1] + "." + strings.Split(good.sign(t, with(claimsAt(now), "sub", "x")), ".")[2], ErrSignature},
		{"payload swapped", goodParts[0] + "." + b64([]byte(strings.Replace(string(payloadJSON), "payments", "paymentz", 1))) + "." + goodParts[2], ErrSignature},
		{"unknown kid inline", rsaKey(2, "nope").sign(t, claimsAt(now)), ErrSignature},
		{"no kid, wrong key", rsaKey(2, "").sign(t, claimsAt(now)), ErrSignature},
		{"alg not allowed for issuer", ec.sign(t, claimsAt(now)), ErrSignature},
		{"alg none", b64([]byte(`{"alg":"none","kid":"k1"}`)) + "." + goodParts[1] + ".", ErrSignature},
		{"alg none with signature", b64([]byte(`{"alg":"none","kid":"k1"}`)) + "." + goodParts[1] + "." + goodParts[2], ErrSignature},
		{"HS256 with public key PEM as secret", hmacWith(pubPEM), ErrSignature},
		{"HS256 with public key DER as secret", hmacWith(pubDER), ErrSignature},
		{"expired", good.sign(t, with(claimsAt(now), "exp", now.Add(-61*time.Second).Unix())), ErrExpired},
		{"not yet valid", good.sign(t, with(claimsAt(now), "nbf", now.Add(2*time.Minute).Unix())), ErrExpired},
		{"issued in the future", good.sign(t, with(claimsAt(now), "iat", now.Add(2*time.Minute).Unix())), ErrExpired},
		{"no exp", good.sign(t, with(claimsAt(now), "exp", nil)), ErrClaims},
		{"wrong issuer", good.sign(t, with(claimsAt(now), "iss", "https://evil.example")), ErrUnknownIssuer},
		{"no issuer", good.sign(t, with(claimsAt(now), "iss", nil)), ErrUnknownIssuer},
		{"issuer not a string", good.sign(t, with(claimsAt(now), "iss", 7)), ErrUnknownIssuer},
		{"wrong audience", good.sign(t, with(claimsAt(now), "aud", "someone-else")), ErrAudience},
		{"no audience", good.sign(t, with(claimsAt(now), "aud", nil)), ErrAudience},
		{"missing principal claim", good.sign(t, with(claimsAt(now), "sub", nil)), ErrClaims},
		{"principal not a string", good.sign(t, with(claimsAt(now), "sub", 42)), ErrClaims},
		{"principal empty", good.sign(t, with(claimsAt(now), "sub", "")), ErrClaims},
		{"bound claim mismatch", good.sign(t, with(claimsAt(now), "kubernetes.io", map[string]any{"namespace": "other"})), ErrClaims},
		{"bound claim missing", good.sign(t, with(claimsAt(now), "kubernetes.io", nil)), ErrClaims},
		{"bound prefix mismatch", good.sign(t, with(claimsAt(now), "sub", "system:serviceaccount:paymentsX:api")), ErrClaims},
		{"bound claim is an object", good.sign(t, with(claimsAt(now), "kubernetes.io", map[string]any{"namespace": map[string]any{"x": "payments"}})), ErrClaims},
		{"exp wrong type", good.sign(t, with(claimsAt(now), "exp", "tomorrow")), ErrMalformed},
		{"empty", "", ErrMalformed},
		{"whitespace", "  \n", ErrMalformed},
		{"garbage", "not a token at all", ErrMalformed},
		{"two parts", "abc.def", ErrMalformed},
		{"four parts", goodTok + ".x", ErrMalformed},
		{"JWE shape", "a.b.c.d.e", ErrMalformed},
		{"bad base64 header", "!!!." + goodParts[1] + "." + goodParts[2], ErrMalformed},
		{"header not JSON", b64([]byte("hello")) + "." + goodParts[1] + "." + goodParts[2], ErrMalformed},
		{"payload not JSON", goodParts[0] + "." + b64([]byte("not json")) + "." + goodParts[2], ErrMalformed},
		{"payload JSON array", goodParts[0] + "." + b64([]byte("[1,2]")) + "." + goodParts[2], ErrMalformed},
		{"payload null", goodParts[0] + "." + b64([]byte("null")) + "." + goodParts[2], ErrMalformed},
		{"too long", goodParts[0] + "." + strings.Repeat("A", maxTokenSize) + "." + goodParts[2], ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := verify(v, tc.token)
			if err == nil {
				t.Fatalf("accepted: %+v", id)
			}
			if id != (Identity{}) {
				t.Fatalf("non-zero identity with error: %+v", id)
			}
			checkErr(t, err, tc.want, tc.token)
		})
	}

	accepted := []struct {
		name   string
		claims map[string]any
	}{
		{"baseline", claimsAt(now)},
		{"aud as string", with(claimsAt(now), "aud", testAud)},
		{"expired within leeway", with(claimsAt(now), "exp", now.Add(-30*time.Second).Unix())},
		{"nbf within leeway", with(claimsAt(now), "nbf", now.Add(30*time.Second).Unix())},
		{"no nbf or iat", with(claimsAt(now), "nbf", nil, "iat", nil)},
		{"bound prefix match", with(claimsAt(now), "sub", "system:serviceaccount:payments:worker")},
	}
	for _, tc := range accepted {
		t.Run("accept/"+tc.name, func(t *testing.T) {
			if _, err := verify(v, good.sign(t, tc.claims)); err != nil {
				t.Fatalf("rejected: %v", err)
			}
		})
	}
	// Surrounding whitespace (e.g. from a file) is tolerated.
	if _, err := verify(v, "\n"+goodTok+"\n"); err != nil {
		t.Fatalf("token with whitespace: %v", err)
	}
}

func TestBoundClaimsKinds(t *testing.T) {
	clock := newClock()
	now := clock.Now()
	k := rsaKey(0, "k1")
	is := baseIssuer("gha")
	is.JWKS = jwksJSON(t, k)
	is.PrincipalClaim = "/kubernetes.io/serviceaccount/name"
	is.BoundClaims = map[string]string{
		"groups":         "ops-*",
		"email_verified": "true",
		"run":            "42",
		"repo":           "*",
	}
	v := NewVerifier(nil, 0, clock.Now)
	mustSet(t, v, is)
	base := with(claimsAt(now), "email_verified", true, "run", 42, "repo", "keyward/keyward")

	tok := k.sign(t, base)
	id, err := verify(v, tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if id.Principal != "api" || id.Subject != testSub || id.Issuer != "gha" {
		t.Fatalf("identity %+v", id)
	}
	for name, claims := range map[string]map[string]any{
		"array without match": with(base, "groups", []any{"dev"}),
		"bool false":          with(base, "email_verified", false),
		"number differs":      with(base, "run", 43),
		"presence required":   with(base, "repo", nil),
		"two missing":         with(base, "repo", nil, "email_verified", nil),
		"principal missing":   with(base, "kubernetes.io", map[string]any{"namespace": "payments"}),
	} {
		tok := k.sign(t, claims)
		_, err := verify(v, tok)
		if !errors.Is(err, ErrClaims) {
			t.Fatalf("%s: error %v, want ErrClaims", name, err)
		}
		assertNoToken(t, err, tok)
	}
}

func TestURLUnknownKidRefetch(t *testing.T) {
	clock := newClock()
	a, b := rsaKey(0, "a"), ecKey(t, "b")
	srv := newJWKSServer(t, jwksJSON(t, a))
	is := baseIssuer("k8s")
	is.JWKSURL = srv.url()
	v := NewVerifier(srv.srv.Client(), 0, clock.Now)
	mustSet(t, v, is)

	if _, err := verify(v, a.sign(t, claimsAt(clock.Now()))); err != nil {
		t.Fatalf("key a: %v", err)
	}
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1", n)
	}

	// The issuer rotates to key b.
	srv.set(jwksJSON(t, b), http.StatusOK)

	// Within 10s of the last fetch an unknown kid does not refetch.
	clock.Advance(5 * time.Second)
	tokB := b.sign(t, claimsAt(clock.Now()))
	_, err := verify(v, tokB)
	checkErr(t, err, ErrSignature, tokB)
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1 (rate limited)", n)
	}

	// Later, the unknown kid triggers one refetch and the token verifies.
	clock.Advance(6 * time.Second)
	tokB = b.sign(t, claimsAt(clock.Now()))
	if _, err := verify(v, tokB); err != nil {
		t.Fatalf("key b after refetch: %v", err)
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2", n)
	}
	// Key a is gone from the set now.
	tokA := a.sign(t, claimsAt(clock.Now()))
	_, err = verify(v, tokA)
	checkErr(t, err, ErrSignature, tokA)
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2 (rate limited)", n)
	}
}

func TestURLPeriodicRefresh(t *testing.T) {
	clock := newClock()
	const refresh = time.Minute
	oldKey, newKey := rsaKey(0, "k1"), rsaKey(1, "k1") // rotated under the same kid
	srv := newJWKSServer(t, jwksJSON(t, oldKey))
	is := baseIssuer("k8s")
	is.JWKSURL = srv.url()
	v := NewVerifier(srv.srv.Client(), refresh, clock.Now)
	mustSet(t, v, is)

	if _, err := verify(v, oldKey.sign(t, claimsAt(clock.Now()))); err != nil {
		t.Fatalf("old key: %v", err)
	}
	srv.set(jwksJSON(t, newKey), http.StatusOK)

	// Before the refresh interval the cached key is used and nothing is fetched;
	// the kid is known, so a bad signature is no reason to refetch.
	for range 5 {
		clock.Advance(10 * time.Second)
		if _, err := verify(v, oldKey.sign(t, claimsAt(clock.Now()))); err != nil {
			t.Fatalf("old key before refresh: %v", err)
		}
		tok := newKey.sign(t, claimsAt(clock.Now()))
		_, err := verify(v, tok)
		checkErr(t, err, ErrSignature, tok)
	}
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1", n)
	}

	// Past the interval the set is refreshed (in the background) and the new
	// key takes over.
	clock.Advance(refresh)
	eventually(t, "new key to verify after refresh", func() bool {
		_, err := verify(v, newKey.sign(t, claimsAt(clock.Now())))
		return err == nil
	})
	tok := oldKey.sign(t, claimsAt(clock.Now()))
	_, err := verify(v, tok)
	checkErr(t, err, ErrSignature, tok)
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2", n)
	}
}

func TestURLUnavailable(t *testing.T) {
	clock := newClock()
	k := rsaKey(0, "k1")
	srv := newJWKSServer(t, "oops")
	srv.set("oops", http.StatusInternalServerError)
	is := baseIssuer("k8s")
	is.JWKSURL = srv.url()
	v := NewVerifier(srv.srv.Client(), time.Minute, clock.Now)
	mustSet(t, v, is)

	tok := k.sign(t, claimsAt(clock.Now()))
	_, err := verify(v, tok)
	checkErr(t, err, ErrKeysUnavailable, tok)
	if errors.Is(err, ErrSignature) {
		t.Fatalf("unavailable keys reported as a bad signature: %v", err)
	}
	// Failed fetches are retried at most every 10s.
	_, err = verify(v, tok)
	checkErr(t, err, ErrKeysUnavailable, tok)
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1", n)
	}

	// The server now serves a non-JWKS body: still unavailable.
	srv.set(`{"hello":"world"}`, http.StatusOK)
	clock.Advance(10 * time.Second)
	tok = k.sign(t, claimsAt(clock.Now()))
	_, err = verify(v, tok)
	checkErr(t, err, ErrKeysUnavailable, tok)

	srv.set(jwksJSON(t, k), http.StatusOK)
	clock.Advance(10 * time.Second)
	if _, err := verify(v, k.sign(t, claimsAt(clock.Now()))); err != nil {
		t.Fatalf("after recovery: %v", err)
	}

	// Once keys are loaded, a failing refresh keeps the previous keys in use.
	srv.set("down", http.StatusServiceUnavailable)
	before := srv.fetches.Load()
	clock.Advance(2 * time.Minute)
	for i := range 3 {
		if _, err := verify(v, k.sign(t, claimsAt(clock.Now()))); err != nil {
			t.Fatalf("stale keys, attempt %d: %v", i, err)
		}
	}
	eventually(t, "background refresh attempt", func() bool { return srv.fetches.Load() > before })
	// An unknown kid while the source is failing is an availability problem.
	tok = rsaKey(1, "k2").sign(t, claimsAt(clock.Now()))
	eventually(t, "refresh failure to be recorded", func() bool {
		_, err := verify(v, tok)
		return errors.Is(err, ErrKeysUnavailable)
	})
	_, err = verify(v, tok)
	assertNoToken(t, err, tok)
}

func TestURLFetchHonoursContext(t *testing.T) {
	clock := newClock()
	k := rsaKey(0, "k1")
	release := make(chan struct{})
	body := jwksJSON(t, k)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // runs before srv.Close

	is := baseIssuer("k8s")
	is.JWKSURL = srv.URL
	v := NewVerifier(srv.Client(), 0, clock.Now)
	mustSet(t, v, is)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	tok := k.sign(t, claimsAt(clock.Now()))
	_, err := v.Verify(ctx, tok)
	checkErr(t, err, ErrKeysUnavailable, tok)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v does not wrap the context error", err)
	}

	// The fetch itself carries on; once the server answers, tokens verify.
	unblock()
	eventually(t, "keys to load", func() bool {
		_, err := verify(v, tok)
		return err == nil
	})
}

func TestFileRotation(t *testing.T) {
	clock := newClock()
	a, b := rsaKey(0, "a"), rsaKey(1, "b")
	path := tempJWKSFile(t, jwksJSON(t, a))
	is := baseIssuer("k8s")
	is.JWKSFile = path
	v := NewVerifier(nil, 0, clock.Now)
	mustSet(t, v, is)

	if _, err := verify(v, a.sign(t, claimsAt(clock.Now()))); err != nil {
		t.Fatalf("key a: %v", err)
	}
	writeFile(t, path, jwksJSON(t, b))
	clock.Advance(11 * time.Second)
	if _, err := verify(v, b.sign(t, claimsAt(clock.Now()))); err != nil {
		t.Fatalf("key b after rewrite: %v", err)
	}
}

func TestSetIssuersKeepsKeys(t *testing.T) {
	clock := newClock()
	k := rsaKey(0, "k1")
	srv := newJWKSServer(t, jwksJSON(t, k))
	is := baseIssuer("k8s")
	is.JWKSURL = srv.url()
	v := NewVerifier(srv.srv.Client(), 0, clock.Now)
	mustSet(t, v, is)
	if _, err := verify(v, k.sign(t, claimsAt(clock.Now()))); err != nil {
		t.Fatal(err)
	}

	// Same key source, other settings changed: keys are kept.
	is2 := is
	is2.Audiences = []string{"new-aud"}
	mustSet(t, v, is2)
	tok := k.sign(t, claimsAt(clock.Now()))
	_, err := verify(v, tok)
	checkErr(t, err, ErrAudience, tok)
	if _, err := verify(v, k.sign(t, with(claimsAt(clock.Now()), "aud", "new-aud"))); err != nil {
		t.Fatal(err)
	}
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1", n)
	}

	// A new source is fetched afresh.
	is3 := is
	is3.JWKSURL = srv.url() + "?v=2"
	mustSet(t, v, is3)
	if _, err := verify(v, k.sign(t, claimsAt(clock.Now()))); err != nil {
		t.Fatal(err)
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2", n)
	}

	// Removing all issuers makes every token's issuer unknown.
	mustSet(t, v)
	tok = k.sign(t, claimsAt(clock.Now()))
	_, err = verify(v, tok)
	checkErr(t, err, ErrUnknownIssuer, tok)
}

func TestSetIssuersSkipsInvalid(t *testing.T) {
	clock := newClock()
	k := rsaKey(0, "k1")
	good := baseIssuer("good")
	good.JWKS = jwksJSON(t, k)
	bad := baseIssuer("bad")
	bad.Issuer = "https://bad.example"
	dupA, dupB := baseIssuer("dup"), baseIssuer("dup")
	dupA.Issuer, dupB.Issuer = "https://dup-a.example", "https://dup-b.example"
	dupA.JWKS, dupB.JWKS = good.JWKS, good.JWKS

	v := NewVerifier(nil, 0, clock.Now)
	err := v.SetIssuers([]Issuer{good, bad, dupA, dupB})
	if !errors.Is(err, ErrInvalidIssuer) {
		t.Fatalf("SetIssuers error %v, want ErrInvalidIssuer", err)
	}
	if !strings.Contains(err.Error(), `"bad"`) || !strings.Contains(err.Error(), `"dup"`) {
		t.Fatalf("error does not name the skipped issuers: %v", err)
	}
	if _, err := verify(v, k.sign(t, claimsAt(clock.Now()))); err != nil {
		t.Fatalf("valid issuer not installed: %v", err)
	}
	for _, iss := range []string{"https://dup-a.example", "https://dup-b.example", "https://bad.example"} {
		tok := k.sign(t, with(claimsAt(clock.Now()), "iss", iss))
		_, err := verify(v, tok)
		checkErr(t, err, ErrUnknownIssuer, tok)
	}
}

func TestSharedIssuerValue(t *testing.T) {
	// Two clusters with the default Kubernetes issuer and their own keys.
	clock := newClock()
	ka, kb := rsaKey(0, "k"), rsaKey(1, "k")
	a := baseIssuer("cluster-a")
	a.JWKS = jwksJSON(t, ka)
	b := baseIssuer("cluster-b")
	b.JWKS = jwksJSON(t, kb)
	b.Audiences = []string{"keyward-b"}
	v := NewVerifier(nil, 0, clock.Now)
	mustSet(t, v, b, a)

	id, err := verify(v, ka.sign(t, claimsAt(clock.Now())))
	if err != nil || id.Issuer != "cluster-a" {
		t.Fatalf("cluster a: %+v, %v", id, err)
	}
	id, err = verify(v, kb.sign(t, with(claimsAt(clock.Now()), "aud", "keyward-b")))
	if err != nil || id.Issuer != "cluster-b" {
		t.Fatalf("cluster b: %+v, %v", id, err)
	}
	// The error comes from the issuer whose key verified the token.
	tok := kb.sign(t, claimsAt(clock.Now()))
	_, err = verify(v, tok)
	checkErr(t, err, ErrAudience, tok)
	tok = rsaKey(2, "k").sign(t, claimsAt(clock.Now()))
	_, err = verify(v, tok)
	checkErr(t, err, ErrSignature, tok)
}

func TestConcurrentVerify(t *testing.T) {
	clock := newClock()
	k := rsaKey(0, "k1")
	srv := newJWKSServer(t, jwksJSON(t, k))
	is := baseIssuer("k8s")
	is.JWKSURL = srv.url()
	inline := baseIssuer("other")
	inline.Issuer = "https://other.example"
	inline.JWKS = jwksJSON(t, k)
	v := NewVerifier(srv.srv.Client(), time.Second, clock.Now)
	mustSet(t, v, is, inline)

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Go(func() {
			for i := range 20 {
				if g == 0 {
					clock.Advance(700 * time.Millisecond)
					is.Audiences = []string{testAud, "x"}
					if err := v.SetIssuers([]Issuer{is, inline}); err != nil {
						errs <- err
						return
					}
				}
				claims := claimsAt(clock.Now())
				if i%2 == 1 {
					claims = with(claims, "iss", inline.Issuer)
				}
				if _, err := verify(v, k.sign(t, claims)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
