package jwtauth

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

func TestValidate(t *testing.T) {
	rs := rsaKey(0, "k1")
	keys := jwksJSON(t, rs)
	privJWKS, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: rs.priv, KeyID: "k1"}}})
	if err != nil {
		t.Fatal(err)
	}
	symJWKS, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "h"}, rs.publicJWK()}})
	if err != nil {
		t.Fatal(err)
	}
	encOnly, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: rs.priv.Public(), KeyID: "e", Use: "enc"}}})
	if err != nil {
		t.Fatal(err)
	}
	small := smallRSAJWKS(t)

	ok := Issuer{Name: "k8s-prod", Issuer: testIss, JWKS: keys, Audiences: []string{testAud}}
	mod := func(f func(*Issuer)) Issuer {
		i := ok
		i.Audiences = append([]string(nil), ok.Audiences...)
		f(&i)
		return i
	}

	cases := []struct {
		name    string
		is      Issuer
		wantErr string // substring; "" = valid
	}{
		{"minimal inline", ok, ""},
		{"file source", mod(func(i *Issuer) { i.JWKS = ""; i.JWKSFile = "/etc/keyward/jwks.json" }), ""},
		{"url source", mod(func(i *Issuer) { i.JWKS = ""; i.JWKSURL = "https://issuer.example/keys" }), ""},
		{"http url", mod(func(i *Issuer) { i.JWKS = ""; i.JWKSURL = "http://10.0.0.1:8080/openid/v1/jwks" }), ""},
		{"all options", mod(func(i *Issuer) {
			i.PrincipalClaim = "/kubernetes.io/serviceaccount/name"
			i.BoundClaims = map[string]string{"/kubernetes.io/namespace": "prod-*", "azp": "x"}
			i.Algorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
		}), ""},
		{"jwks with an extra enc key", mod(func(i *Issuer) {
			var set jose.JSONWebKeySet
			_ = json.Unmarshal([]byte(keys), &set)
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: rs.priv.Public(), KeyID: "e", Use: "enc"})
			b, _ := json.Marshal(set)
			i.JWKS = string(b)
		}), ""},

		{"no name", mod(func(i *Issuer) { i.Name = "" }), "name is required"},
		{"bad name", mod(func(i *Issuer) { i.Name = "k8s prod" }), "may contain only"},
		{"long name", mod(func(i *Issuer) { i.Name = strings.Repeat("a", 129) }), "longer than"},
		{"no issuer", mod(func(i *Issuer) { i.Issuer = "" }), "issuer is required"},
		{"blank issuer", mod(func(i *Issuer) { i.Issuer = "  " }), "issuer is required"},
		{"issuer with space", mod(func(i *Issuer) { i.Issuer = testIss + " " }), "whitespace"},
		{"no source", mod(func(i *Issuer) { i.JWKS = "" }), "exactly one of"},
		{"two sources", mod(func(i *Issuer) { i.JWKSURL = "https://issuer.example/keys" }), "exactly one of"},
		{"three sources", mod(func(i *Issuer) { i.JWKSURL = "https://x/keys"; i.JWKSFile = "/x" }), "got 3"},
		{"jwks not JSON", mod(func(i *Issuer) { i.JWKS = "{" }), "not a JWKS"},
		{"jwks without keys", mod(func(i *Issuer) { i.JWKS = `{"keys":[]}` }), `no "keys"`},
		{"jwks with unusable key", mod(func(i *Issuer) { i.JWKS = `{"keys":[{"kty":"RSA","n":"AQAB"}]}` }), "no usable"},
		{"jwks only enc keys", mod(func(i *Issuer) { i.JWKS = string(encOnly) }), "no usable"},
		{"jwks small RSA", mod(func(i *Issuer) { i.JWKS = small }), "no usable"},
		{"jwks private key", mod(func(i *Issuer) { i.JWKS = string(privJWKS) }), "private key material"},
		{"jwks symmetric key", mod(func(i *Issuer) { i.JWKS = string(symJWKS) }), "private key material"},
		{"relative file", mod(func(i *Issuer) { i.JWKS = ""; i.JWKSFile = "jwks.json" }), "absolute path"},
		{"url bad scheme", mod(func(i *Issuer) { i.JWKS = ""; i.JWKSURL = "file:///etc/jwks.json" }), "scheme"},
		{"url no host", mod(func(i *Issuer) { i.JWKS = ""; i.JWKSURL = "https:///keys" }), "host"},
		{"url with credentials", mod(func(i *Issuer) { i.JWKS = ""; i.JWKSURL = "https://u:p@issuer.example/keys" }), "credentials"},
		{"url unparsable", mod(func(i *Issuer) { i.JWKS = ""; i.JWKSURL = "https://[::1" }), "not a valid URL"},
		{"no audiences", mod(func(i *Issuer) { i.Audiences = nil }), "audience is required"},
		{"empty audience", mod(func(i *Issuer) { i.Audiences = []string{"a", ""} }), "empty value"},
		{"blank principal claim", mod(func(i *Issuer) { i.PrincipalClaim = " " }), "principal_claim"},
		{"bad pointer", mod(func(i *Issuer) { i.PrincipalClaim = "/a~2b" }), "escape"},
		{"empty bound claim name", mod(func(i *Issuer) { i.BoundClaims = map[string]string{"": "x"} }), "claim name is empty"},
		{"empty bound value", mod(func(i *Issuer) { i.BoundClaims = map[string]string{"ns": ""} }), "value for"},
		{"HS256", mod(func(i *Issuer) { i.Algorithms = []string{"HS256"} }), `"HS256" is not supported`},
		{"none", mod(func(i *Issuer) { i.Algorithms = []string{"RS256", "none"} }), `"none" is not supported`},
		{"lowercase alg", mod(func(i *Issuer) { i.Algorithms = []string{"rs256"} }), "not supported"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.is.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted %+v", tc.is)
			}
			if !errors.Is(err, ErrInvalidIssuer) {
				t.Fatalf("error %v does not wrap ErrInvalidIssuer", err)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestValidateReportsAllProblems(t *testing.T) {
	err := Issuer{}.Validate()
	if err == nil {
		t.Fatal("empty issuer accepted")
	}
	for _, want := range []string{"name is required", "issuer is required", "exactly one of", "audience is required"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestIssuerJSONRoundTrip(t *testing.T) {
	in := Issuer{
		Name: "k8s", Issuer: testIss, JWKSURL: "https://issuer.example/keys", Audiences: []string{"a"},
		PrincipalClaim: "email", BoundClaims: map[string]string{"ns": "x*"}, Algorithms: []string{"ES256"},
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"name"`, `"issuer"`, `"jwks_url"`, `"audiences"`, `"principal_claim"`, `"bound_claims"`, `"algorithms"`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("JSON %s lacks %s", b, key)
		}
	}
	if strings.Contains(string(b), `"jwks"`) || strings.Contains(string(b), `"jwks_file"`) {
		t.Errorf("JSON %s has empty sources", b)
	}
	var out Issuer
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if err := out.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestJSONPointer(t *testing.T) {
	claims := map[string]any{
		"a/b": "slash",
		"m~n": "tilde",
		"obj": map[string]any{"list": []any{"x", "y"}},
	}
	for ptr, want := range map[string]any{
		"/a~1b":       "slash",
		"/m~0n":       "tilde",
		"/obj/list/1": "y",
	} {
		got, ok := lookupClaim(claims, ptr)
		if !ok || got != want {
			t.Errorf("%s = %v, %v; want %v", ptr, got, ok, want)
		}
	}
	for _, ptr := range []string{"/obj/list/2", "/obj/list/01", "/obj/list/-1", "/obj/missing", "/a~1b/x", "/x~2"} {
		if got, ok := lookupClaim(claims, ptr); ok {
			t.Errorf("%s found %v", ptr, got)
		}
	}
}
