package clustertest_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/keyward/keyward/api/client"
	"github.com/keyward/keyward/cluster/certs"
	"github.com/keyward/keyward/cluster/clustertest"
	"github.com/keyward/keyward/store"
)

// call sends a JSON request to node i with token and decodes the JSON answer.
func call(t *testing.T, c *clustertest.Cluster, i int, method, path, token string, body any) (int, map[string]any) {
	t.Helper()
	return callWith(t, c.Nodes[i].HTTP, c.Nodes[i].URL(), method, path, token, body)
}

func callWith(t *testing.T, hc *http.Client, base, method, path, token string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out := map[string]any{}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func mustCall(t *testing.T, c *clustertest.Cluster, i int, method, path, token string, body any) map[string]any {
	t.Helper()
	st, out := call(t, c, i, method, path, token, body)
	if st != http.StatusOK {
		t.Fatalf("%s %s on node %d: HTTP %d %v", method, path, i, st, out)
	}
	return out
}

func errCode(out map[string]any) string {
	if e, ok := out["error"].(map[string]any); ok {
		s, _ := e["code"].(string)
		return s
	}
	return ""
}

// waitAudit polls node i's audit log until a record matching the query exists.
func waitAudit(t *testing.T, c *clustertest.Cluster, i int, query string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		out := mustCall(t, c, i, http.MethodGet, "/v1/sys/audit?limit=1000&"+query, c.Token, nil)
		recs, _ := out["records"].([]any)
		for _, r := range recs {
			if m, ok := r.(map[string]any); ok && match(m) {
				return m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %d: no audit record for %q among %d", i, query, len(recs))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAuthenticationAuthorizationAudit exercises identity on a real three-node cluster:
// 401 without credentials, 403 with an audited denial, grants, tokens validated on other
// nodes, revocation seen everywhere, AppRole limits, and follower reads in every node's audit.
func TestAuthenticationAuthorizationAudit(t *testing.T) {
	c := clustertest.StartCluster(t, binary, clustertest.Options{Voters: 3})
	ctx := ctxT(t, 120*time.Second)
	if _, err := c.Client(0).Put(ctx, "prod/db", []byte("s3cr3t"), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if st, out := call(t, c, 1, http.MethodGet, "/v1/secrets/prod/db", "", nil); st != http.StatusUnauthorized || errCode(out) != "unauthenticated" {
		t.Fatalf("no credentials: %d %v", st, out)
	}
	if st, _ := call(t, c, 1, http.MethodGet, "/v1/secrets/prod/db", "kw_forged", nil); st != http.StatusUnauthorized {
		t.Fatalf("forged token: %d", st)
	}

	mustCall(t, c, 0, http.MethodPut, "/v1/sys/principals/USER/ann", c.Token, map[string]any{"password": "correct horse"})
	if st, out := call(t, c, 1, http.MethodPost, "/v1/auth/userpass/login", "", map[string]string{"username": "ann", "password": "wrong"}); st != http.StatusUnauthorized || errCode(out) != "login_failed" {
		t.Fatalf("wrong password: %d %v", st, out)
	}
	login := mustCall(t, c, 1, http.MethodPost, "/v1/auth/userpass/login", "", map[string]string{"username": "ann", "password": "correct horse"})
	ann, _ := login["token"].(string)

	// Denied on node 2 with a token issued through node 1; the denial is audited.
	if st, out := call(t, c, 2, http.MethodGet, "/v1/secrets/prod/db", ann, nil); st != http.StatusForbidden || errCode(out) != "forbidden" {
		t.Fatalf("read without a grant: %d %v", st, out)
	}
	rec := waitAudit(t, c, 0, "principal=ann&outcome=failure&action=READ", func(m map[string]any) bool { return m["path"] == "prod/db" })
	if rec["reason"] != "forbidden" || rec["node_id"] == "" || rec["ip_address"] == "" {
		t.Fatalf("denial record %v", rec)
	}

	g := mustCall(t, c, 0, http.MethodPost, "/v1/sys/grants", c.Token, map[string]any{
		"principal_type": "USER", "principal_id": "ann", "actions": []string{"READ"}, "pattern": "prod/*"})
	if g["id"] == "" {
		t.Fatalf("grant: %v", g)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, out := call(t, c, 2, http.MethodGet, "/v1/secrets/prod/db", ann, nil)
		if st == http.StatusOK && out["value"] == "s3cr3t" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("read with grant: %d %v", st, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The read served by node 2 appears in the audit log of every node.
	for i := range c.Nodes {
		waitAudit(t, c, i, "principal=ann&outcome=success&action=READ", func(m map[string]any) bool {
			return m["path"] == "prod/db" && m["node_id"] == c.IDs[2]
		})
	}
	// Non-admins cannot administer.
	if st, _ := call(t, c, 0, http.MethodPost, "/v1/sys/grants", ann, map[string]any{
		"principal_type": "USER", "principal_id": "ann", "actions": []string{"WRITE"}, "pattern": "*"}); st != http.StatusForbidden {
		t.Fatalf("non-admin grant: %d", st)
	}
	// Revoked through node 0, refused by node 2 once committed.
	mustCall(t, c, 0, http.MethodPost, "/v1/auth/token/revoke", c.Token, map[string]string{"token": ann})
	deadline = time.Now().Add(10 * time.Second)
	for {
		if st, _ := call(t, c, 2, http.MethodGet, "/v1/secrets/prod/db", ann, nil); st == http.StatusUnauthorized {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("revoked token still accepted on another node")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// AppRole: one use; a second login with the same secret id fails; a role bound to other
	// addresses refuses; an expired secret id refuses.
	role := mustCall(t, c, 0, http.MethodPut, "/v1/sys/approles/ci", c.Token, map[string]any{
		"principal": "ci-runner", "secret_id_uses": 1, "cidrs": []string{"127.0.0.0/8"}})
	roleID, _ := role["role_id"].(string)
	sid, _ := mustCall(t, c, 0, http.MethodPost, "/v1/sys/approles/ci/secret-id", c.Token, nil)["secret_id"].(string)
	l := mustCall(t, c, 1, http.MethodPost, "/v1/auth/approle/login", "", map[string]string{"role_id": roleID, "secret_id": sid})
	if l["principal"] != "SERVICE/ci-runner" {
		t.Fatalf("approle login: %v", l)
	}
	if st, _ := call(t, c, 2, http.MethodPost, "/v1/auth/approle/login", "", map[string]string{"role_id": roleID, "secret_id": sid}); st != http.StatusUnauthorized {
		t.Fatalf("secret id used twice: %d", st)
	}
	far := mustCall(t, c, 0, http.MethodPut, "/v1/sys/approles/far", c.Token, map[string]any{"principal": "far", "cidrs": []string{"10.0.0.0/8"}})
	farSID, _ := mustCall(t, c, 0, http.MethodPost, "/v1/sys/approles/far/secret-id", c.Token, nil)["secret_id"].(string)
	if st, _ := call(t, c, 1, http.MethodPost, "/v1/auth/approle/login", "", map[string]string{"role_id": far["role_id"].(string), "secret_id": farSID}); st != http.StatusUnauthorized {
		t.Fatalf("login from a disallowed CIDR: %d", st)
	}
	short := mustCall(t, c, 0, http.MethodPut, "/v1/sys/approles/short", c.Token, map[string]any{"principal": "short", "secret_id_ttl": "1s"})
	shortSID, _ := mustCall(t, c, 0, http.MethodPost, "/v1/sys/approles/short/secret-id", c.Token, nil)["secret_id"].(string)
	time.Sleep(1100 * time.Millisecond) // the secret id's TTL must pass; nothing to poll
	if st, _ := call(t, c, 1, http.MethodPost, "/v1/auth/approle/login", "", map[string]string{"role_id": short["role_id"].(string), "secret_id": shortSID}); st != http.StatusUnauthorized {
		t.Fatalf("expired secret id: %d", st)
	}
	waitAudit(t, c, 0, "action=LOGIN&outcome=failure", func(m map[string]any) bool { return m["auth_method"] == "approle" })

	// The chain verifies; an export with one changed record names the batch.
	if rep := mustCall(t, c, 1, http.MethodGet, "/v1/sys/audit/verify", c.Token, nil); rep["ok"] != true {
		t.Fatalf("verify: %v", rep)
	}
	var export bytes.Buffer
	req, _ := http.NewRequest(http.MethodGet, c.Nodes[0].URL()+"/v1/sys/audit/export", nil)
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := c.Nodes[0].HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(&export, resp.Body)
	resp.Body.Close()
	var lines []store.AuditExportLine
	for _, ln := range strings.Split(strings.TrimSpace(export.String()), "\n") {
		var l store.AuditExportLine
		if err := json.Unmarshal([]byte(ln), &l); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l)
	}
	if rep := store.VerifyChain(lines); !rep.OK || rep.Records == 0 {
		t.Fatalf("exported chain: %+v", rep)
	}
	for i := range lines {
		if r := lines[i].Record; r != nil && r.PrincipalID == "ann" {
			r.Success = !r.Success
			rep := store.VerifyChain(lines)
			if rep.OK || rep.BrokenBatch != r.Batch {
				t.Fatalf("tampered record in batch %d: %+v", r.Batch, rep)
			}
			break
		}
	}
}

// TestAuditSurvivesKill: a node killed right after it answered a read has made that read's
// record durable; after a restart it ships and the whole cluster has it.
func TestAuditSurvivesKill(t *testing.T) {
	c := clustertest.StartCluster(t, binary, clustertest.Options{Voters: 3})
	ctx := ctxT(t, 120*time.Second)
	if _, err := c.Client(0).Put(ctx, "k/x", []byte("v"), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	victim := 1
	got, err := c.Client(victim).Get(ctx, "k/x", client.Selector{})
	if err != nil {
		t.Fatal(err)
	}
	c.Kill(victim) // right after the answer
	c.Restart(victim)
	if err := c.Nodes[victim].WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	other := (victim + 1) % 3
	waitAudit(t, c, other, "action=READ&outcome=success", func(m map[string]any) bool {
		return m["path"] == "k/x" && m["node_id"] == c.IDs[victim] && m["version_id"] == got.VersionID
	})
}

// TestMTLSAndJWTIdentities: a client certificate from the organization CA authenticates a
// SERVICE principal (SPIFFE URI SAN), one from another CA is refused; a JWT from a configured
// issuer logs in, forged or wrong-audience ones do not.
func TestMTLSAndJWTIdentities(t *testing.T) {
	orgDir := t.TempDir()
	orgCA, orgKey, err := certs.CreateCA(orgDir, "org", "org CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	spiffe, _ := url.Parse("spiffe://example.org/payments/api")
	cert, key, err := certs.CreateCert(certs.CertRequest{CACert: orgCA, CAKey: orgKey, Dir: orgDir, Name: "svc",
		CommonName: "payments-api", URIs: []*url.URL{spiffe}, Validity: time.Hour, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	c := clustertest.StartCluster(t, binary, clustertest.Options{Voters: 3, Args: []string{"--tls-client-ca", orgCA}})
	ctx := ctxT(t, 120*time.Second)
	if _, err := c.Client(0).Put(ctx, "payments/key", []byte("k1"), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	mustCall(t, c, 0, http.MethodPost, "/v1/sys/grants", c.Token, map[string]any{
		"principal_type": "SERVICE", "principal_id": spiffe.String(), "actions": []string{"READ"}, "pattern": "payments/*"})
	mtls, err := certs.ClientTLS(c.CAFile, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: client.NewTransport(mtls)}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, out := callWith(t, hc, c.Nodes[1].URL(), http.MethodGet, "/v1/secrets/payments/key", "", nil)
		if st == http.StatusOK && out["value"] == "k1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mTLS read: %d %v", st, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A certificate from another CA is refused in the handshake.
	rogueDir := t.TempDir()
	rCA, rKey, _ := certs.CreateCA(rogueDir, "rogue", "rogue CA", time.Hour)
	rCert, rCertKey, _ := certs.CreateCert(certs.CertRequest{CACert: rCA, CAKey: rKey, Dir: rogueDir, Name: "svc",
		CommonName: "payments-api", URIs: []*url.URL{spiffe}, Validity: time.Hour, Client: true})
	pair, err := tls.LoadX509KeyPair(rCert, rCertKey)
	if err != nil {
		t.Fatal(err)
	}
	rogue := c.TLS.Clone()
	rogue.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	rhc := &http.Client{Timeout: 5 * time.Second, Transport: client.NewTransport(rogue)}
	if resp, err := rhc.Get(c.Nodes[1].URL() + "/v1/secrets/payments/key"); err == nil {
		resp.Body.Close()
		t.Fatalf("a certificate from another CA was accepted: HTTP %d", resp.StatusCode)
	}

	// JWT: an issuer with an inline JWKS and a bound audience.
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwks := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &priv.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}}
	jwksJSON, _ := json.Marshal(jwks)
	mustCall(t, c, 0, http.MethodPut, "/v1/sys/auth/jwt/k8s", c.Token, map[string]any{"config": map[string]any{
		"issuer": "https://k8s.example", "jwks": string(jwksJSON), "audiences": []string{"keyward"}}})
	sign := func(key *rsa.PrivateKey, aud string) string {
		sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		tok, err := jwt.Signed(sig).Claims(jwt.Claims{Issuer: "https://k8s.example", Subject: "system:serviceaccount:pay:api",
			Audience: jwt.Audience{aud}, Expiry: jwt.NewNumericDate(now.Add(time.Hour)), IssuedAt: jwt.NewNumericDate(now)}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	l := mustCall(t, c, 2, http.MethodPost, "/v1/auth/jwt/login", "", map[string]string{"jwt": sign(priv, "keyward")})
	if l["principal"] != "SERVICE/system:serviceaccount:pay:api" || l["token"] == "" {
		t.Fatalf("jwt login: %v", l)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	for name, tok := range map[string]string{"forged": sign(other, "keyward"), "wrong audience": sign(priv, "other"), "garbage": "a.b.c"} {
		if st, _ := call(t, c, 1, http.MethodPost, "/v1/auth/jwt/login", "", map[string]string{"jwt": tok}); st != http.StatusUnauthorized {
			t.Errorf("%s JWT: HTTP %d", name, st)
		}
	}
}
