package clustertest_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/keyward/keyward/api/agent"
	"github.com/keyward/keyward/api/client"
	"github.com/keyward/keyward/cluster/certs"
	"github.com/keyward/keyward/cluster/clustertest"
)

// TestClientAuthMethods: against a real three-node TLS cluster, the Go client logs in with an
// AppRole and keeps working across token expiry (renewals, then a new login once the maximum
// TTL is near) and across a revoked token (401 → one re-login); logs in with a JWT read from a
// file; authenticates with a client certificate (no login), picking up a replaced certificate;
// and a write sent to a follower follows the redirect to the leader.
func TestClientAuthMethods(t *testing.T) {
	orgDir := t.TempDir()
	orgCA, orgKey, err := certs.CreateCA(orgDir, "org", "org CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := clustertest.StartCluster(t, binary, clustertest.Options{Voters: 3, Args: []string{"--tls-client-ca", orgCA}})
	ctx := ctxT(t, 180*time.Second)
	admin := c.Client(0)
	if _, err := admin.Put(ctx, "svc/key", []byte("k1"), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	grant := func(principal string) {
		t.Helper()
		if _, err := admin.Grant(ctx, client.GrantRequest{PrincipalType: "SERVICE", PrincipalID: principal,
			Actions: []string{"READ", "WRITE"}, Pattern: "svc/*"}); err != nil {
			t.Fatal(err)
		}
	}
	var addrs []string
	for _, n := range c.Nodes {
		addrs = append(addrs, n.URL())
	}
	all := strings.Join(addrs, ",")
	dir := t.TempDir()

	t.Run("approle", func(t *testing.T) {
		grant("batch")
		roleID, err := admin.PutAppRole(ctx, "batch", client.AppRoleRequest{Principal: "batch", TokenTTL: "2s", TokenMaxTTL: "3s"})
		if err != nil {
			t.Fatal(err)
		}
		sid, _, err := admin.MintSecretID(ctx, "batch")
		if err != nil {
			t.Fatal(err)
		}
		sidFile := filepath.Join(dir, "secret-id")
		if err := os.WriteFile(sidFile, []byte(sid), 0o600); err != nil {
			t.Fatal(err)
		}
		cl, err := client.New(all, client.WithTLSConfig(c.TLS), client.WithAuth(client.AppRoleAuth{RoleID: roleID, SecretIDFile: sidFile}))
		if err != nil {
			t.Fatal(err)
		}
		// Read for a while: past the 3 s maximum the client must have renewed and logged in
		// again, and no read may fail.
		deadline := time.Now().Add(30 * time.Second)
		reads := 0
		for {
			s, err := cl.Get(ctx, "svc/key", client.Selector{})
			if err != nil || string(s.Value) != "k1" {
				t.Fatalf("read %d: %v %v (auth %+v)", reads, s, err, cl.AuthStats())
			}
			reads++
			if st := cl.AuthStats(); st.Logins >= 2 && st.Renewals >= 1 {
				t.Logf("%d reads, auth %+v", reads, st)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no renewal and re-login after %d reads: %+v", reads, cl.AuthStats())
			}
			time.Sleep(50 * time.Millisecond)
		}
		// A revoked token: the next request gets 401, logs in again once and succeeds.
		before := cl.AuthStats().Logins
		if err := cl.RevokeToken(ctx, "", ""); err != nil {
			t.Fatal(err)
		}
		deadline = time.Now().Add(20 * time.Second)
		for cl.AuthStats().Logins == before {
			if _, err := cl.Get(ctx, "svc/key", client.Selector{}); err != nil {
				t.Fatalf("read after revocation: %v", err)
			}
			if time.Now().After(deadline) {
				t.Fatal("no re-login after the token was revoked")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if info, err := cl.TokenSelf(ctx); err != nil || info.PrincipalID != "batch" || info.PrincipalType != "SERVICE" {
			t.Fatalf("token self: %+v %v", info, err)
		}
	})

	t.Run("jwt file", func(t *testing.T) {
		priv, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &priv.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
		conf, _ := json.Marshal(map[string]any{"issuer": "https://k8s.example", "jwks": string(jwks), "audiences": []string{"keyward"}})
		if err := admin.PutJWTIssuer(ctx, "k8s", conf, "", ""); err != nil {
			t.Fatal(err)
		}
		grant("system:serviceaccount:svc:api")
		sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: priv}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		tok, err := jwt.Signed(sig).Claims(jwt.Claims{Issuer: "https://k8s.example", Subject: "system:serviceaccount:svc:api",
			Audience: jwt.Audience{"keyward"}, Expiry: jwt.NewNumericDate(now.Add(time.Hour)), IssuedAt: jwt.NewNumericDate(now)}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		jwtFile := filepath.Join(dir, "sa-token")
		if err := os.WriteFile(jwtFile, []byte(tok), 0o600); err != nil {
			t.Fatal(err)
		}
		cl, err := client.New(all, client.WithTLSConfig(c.TLS), client.WithAuth(client.JWTFile(jwtFile)))
		if err != nil {
			t.Fatal(err)
		}
		if s, err := cl.Get(ctx, "svc/key", client.Selector{}); err != nil || string(s.Value) != "k1" {
			t.Fatalf("read with a JWT login: %v %v", s, err)
		}
		if info, err := cl.TokenSelf(ctx); err != nil || info.PrincipalID != "system:serviceaccount:svc:api" || info.PrincipalType != "SERVICE" {
			t.Fatalf("token self: %+v %v", info, err)
		}
		// A garbage JWT in the file: the next login fails with login_failed.
		if err := os.WriteFile(jwtFile, []byte("a.b.c"), 0o600); err != nil {
			t.Fatal(err)
		}
		bad, _ := client.New(all, client.WithTLSConfig(c.TLS), client.WithAuth(client.JWTFile(jwtFile)))
		if _, err := bad.Get(ctx, "svc/key", client.Selector{}); !client.IsCode(err, "login_failed") {
			t.Fatalf("garbage JWT: %v", err)
		}
	})

	t.Run("client certificate", func(t *testing.T) {
		issue := func(name string) (string, string) {
			spiffe, _ := url.Parse("spiffe://example.org/" + name)
			cert, key, err := certs.CreateCert(certs.CertRequest{CACert: orgCA, CAKey: orgKey, Dir: orgDir, Name: name,
				CommonName: name, URIs: []*url.URL{spiffe}, Validity: time.Hour, Client: true})
			if err != nil {
				t.Fatal(err)
			}
			return cert, key
		}
		grant("spiffe://example.org/reader")
		rCert, rKey := issue("reader")
		oCert, oKey := issue("outsider")
		live, liveKey := filepath.Join(dir, "live.pem"), filepath.Join(dir, "live-key.pem")
		install := func(cert, key string) {
			t.Helper()
			for src, dst := range map[string]string{cert: live, key: liveKey} {
				b, err := os.ReadFile(src)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(dst+".new", b, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(dst+".new", dst); err != nil {
					t.Fatal(err)
				}
				later := time.Now().Add(2 * time.Second)
				_ = os.Chtimes(dst, later, later)
			}
		}
		install(rCert, rKey)
		cfg, err := client.TLSFiles{CAFile: c.CAFile, CertFile: live, KeyFile: liveKey}.Config()
		if err != nil {
			t.Fatal(err)
		}
		cl, err := client.New(all, client.WithTLSConfig(cfg))
		if err != nil {
			t.Fatal(err)
		}
		if s, err := cl.Get(ctx, "svc/key", client.Selector{}); err != nil || string(s.Value) != "k1" {
			t.Fatalf("read with a client certificate: %v %v", s, err)
		}
		if info, err := cl.TokenSelf(ctx); err != nil || info.PrincipalID != "spiffe://example.org/reader" {
			t.Fatalf("token self: %+v %v", info, err)
		}
		// The agent in-process with the certificate as its identity renders a file.
		dest := filepath.Join(dir, "cert-agent.out")
		ag, err := agent.New(&agent.Config{Addr: all, TLS: agent.TLSConfig{CAFile: c.CAFile, CertFile: live, KeyFile: liveKey},
			Auth:      agent.AuthConfig{Method: "cert"},
			Templates: []agent.TemplateConfig{{Contents: `KEY={{ secret "svc/key" }}`, Destination: dest}},
		}, slog.New(slog.DiscardHandler), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		defer ag.Close()
		ag.Tick(ctx)
		if b, err := os.ReadFile(dest); err != nil || string(b) != "KEY=k1" {
			t.Fatalf("agent with a client certificate rendered %q %v", b, err)
		}
		// Replace the files: a new connection presents the new certificate, whose principal
		// has no grant.
		install(oCert, oKey)
		cl2, _ := client.New(all, client.WithTLSConfig(cfg))
		if _, err := cl2.Get(ctx, "svc/key", client.Selector{}); !client.IsCode(err, "forbidden") {
			t.Fatalf("after the certificate was replaced: %v", err)
		}
	})

	t.Run("writes follow the leader", func(t *testing.T) {
		l, err := c.WaitForLeader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		order := []string{addrs[(l+1)%3], addrs[(l+2)%3], addrs[l]} // followers first
		cl, err := client.New(strings.Join(order, ","), client.WithTLSConfig(c.TLS), client.WithToken(c.Token))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.Put(ctx, "svc/key", []byte("k2"), client.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		if got := cl.PreferredNode(); got != addrs[l] {
			t.Fatalf("after a write the client prefers %s, want the leader %s", got, addrs[l])
		}
	})
}
