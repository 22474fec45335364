package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/api"
	"github.com/keyward/keyward/api/client"
	"github.com/keyward/keyward/fsm"
	"github.com/keyward/keyward/store"
)

// The identity methods are tested against the real api.Server (its routes, strict JSON
// decoding and error table) over fake accounts, so a drift between the client's requests and
// the handlers, or between the client's types and the server's JSON, fails here.

// fakeAccounts records each call as a line and answers with canned values.
type fakeAccounts struct {
	mu    sync.Mutex
	calls []string
	err   error // returned by every call that can fail

	login      store.Login
	principals []store.PrincipalView
	grants     []fsm.Policy
	approles   []fsm.AppRole
	audit      []fsm.AuditRecord
	next       uint64
	filter     store.AuditFilter
	export     []store.AuditExportLine
	report     store.ChainReport
	grantIn    store.GrantInput
	appRoleIn  store.AppRoleInput
	jwtConfig  json.RawMessage
	secretExp  time.Time
	principal  store.PrincipalInput
	initalized bool
}

func (f *fakeAccounts) record(format string, a ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, a...))
	return f.err
}

func (f *fakeAccounts) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeAccounts) reset(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls, f.err = nil, err
}

func (f *fakeAccounts) loginOr(err error) (*store.Login, error) {
	if err != nil {
		return nil, err
	}
	l := f.login
	return &l, nil
}

func (f *fakeAccounts) Init(_ context.Context, admin, password, root string) (*store.Login, error) {
	return f.loginOr(f.record("init %s %s %q", admin, password, root))
}
func (f *fakeAccounts) Initialized() bool { return f.initalized }
func (f *fakeAccounts) LoginUserpass(_ context.Context, user, password string) (*store.Login, error) {
	return f.loginOr(f.record("userpass %s %s", user, password))
}
func (f *fakeAccounts) LoginAppRole(_ context.Context, roleID, secretID string) (*store.Login, error) {
	return f.loginOr(f.record("approle %s %s", roleID, secretID))
}
func (f *fakeAccounts) LoginJWT(_ context.Context, jwt string) (*store.Login, error) {
	return f.loginOr(f.record("jwt %s", jwt))
}
func (f *fakeAccounts) Renew(ctx context.Context) (*store.Login, error) {
	c, _ := store.CallerFrom(ctx)
	return f.loginOr(f.record("renew %s", c.TokenHash))
}
func (f *fakeAccounts) Revoke(ctx context.Context, token, accessor string) error {
	c, _ := store.CallerFrom(ctx)
	return f.record("revoke %q %q by %s", token, accessor, c.TokenHash)
}
func (f *fakeAccounts) PutPrincipal(_ context.Context, in store.PrincipalInput) error {
	f.principal = in
	return f.record("put %s/%s", in.Type, in.ID)
}
func (f *fakeAccounts) DeletePrincipal(_ context.Context, t fsm.PrincipalType, id string) error {
	return f.record("delete %s/%s", t, id)
}
func (f *fakeAccounts) Principals(context.Context) ([]store.PrincipalView, error) {
	return f.principals, f.record("principals")
}
func (f *fakeAccounts) SetRoleMember(_ context.Context, role string, t fsm.PrincipalType, id string, member bool) error {
	return f.record("member %s %s/%s %v", role, t, id, member)
}
func (f *fakeAccounts) Grant(_ context.Context, in store.GrantInput) (string, error) {
	f.grantIn = in
	return "g-1", f.record("grant")
}
func (f *fakeAccounts) RevokeGrant(_ context.Context, id string) error {
	return f.record("revoke-grant %s", id)
}
func (f *fakeAccounts) Grants(_ context.Context, t fsm.PrincipalType, id string) ([]fsm.Policy, error) {
	return f.grants, f.record("grants %q %q", t, id)
}
func (f *fakeAccounts) PutAppRole(_ context.Context, in store.AppRoleInput) (string, error) {
	f.appRoleIn = in
	return "rid-1", f.record("put-approle %s", in.Name)
}
func (f *fakeAccounts) DeleteAppRole(_ context.Context, name string) error {
	return f.record("delete-approle %s", name)
}
func (f *fakeAccounts) AppRoles(context.Context) ([]fsm.AppRole, error) {
	return f.approles, f.record("approles")
}
func (f *fakeAccounts) MintSecretID(_ context.Context, name string) (string, time.Time, error) {
	return "sid_xyz", f.secretExp, f.record("mint %s", name)
}
func (f *fakeAccounts) PutJWTIssuer(_ context.Context, name string, config json.RawMessage, ttl, maxTTL time.Duration) error {
	f.jwtConfig = config
	return f.record("put-jwt %s %v %v", name, ttl, maxTTL)
}
func (f *fakeAccounts) DeleteJWTIssuer(_ context.Context, name string) error {
	return f.record("delete-jwt %s", name)
}
func (f *fakeAccounts) AuditList(_ context.Context, fl store.AuditFilter) ([]fsm.AuditRecord, uint64, error) {
	f.filter = fl
	return f.audit, f.next, f.record("audit")
}
func (f *fakeAccounts) AuditExport(_ context.Context, emit func(store.AuditExportLine) error) error {
	if err := f.record("export"); err != nil {
		return err
	}
	for _, l := range f.export {
		if err := emit(l); err != nil {
			return err
		}
	}
	return nil
}
func (f *fakeAccounts) AuditVerify(context.Context) (store.ChainReport, error) {
	return f.report, f.record("verify")
}

// fakeIdentity takes any token as an admin's and keeps it as the caller's token hash, so the
// fake accounts can tell which token a request carried.
type fakeIdentity struct{}

func (fakeIdentity) Authenticate(_ context.Context, token string) (store.Caller, error) {
	if token == "bad" {
		return store.Caller{}, store.ErrUnauthenticated
	}
	return store.Caller{Type: fsm.PrincipalUser, ID: "admin", Method: "token", Roles: []string{"ops"}, Admin: true, TokenHash: token}, nil
}
func (fakeIdentity) CertCaller(id string) store.Caller {
	return store.Caller{Type: fsm.PrincipalService, ID: id}
}

func identityServer(t *testing.T, fa *fakeAccounts) *client.Client {
	t.Helper()
	srv := httptest.NewServer(api.New(api.Deps{Secrets: &fakeSecrets{}, Cluster: &fakeCluster{}, Identity: fakeIdentity{}, Accounts: fa}))
	t.Cleanup(srv.Close)
	c, err := client.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func wantCalls(t *testing.T, fa *fakeAccounts, want ...string) {
	t.Helper()
	if got := fa.seen(); !reflect.DeepEqual(got, want) {
		t.Errorf("calls %q\nwant %q", got, want)
	}
	fa.reset(nil)
}

func TestIdentityTypesMirrorServer(t *testing.T) {
	for _, pair := range [][2]any{
		{fsm.Policy{}, client.Policy{}},
		{fsm.AppRole{}, client.AppRole{}},
		{fsm.AuditRecord{}, client.AuditRecord{}},
		{fsm.AuditBatch{}, client.AuditBatch{}},
		{store.AuditExportLine{}, client.AuditExportLine{}},
		{store.ChainReport{}, client.ChainReport{}},
		{store.PrincipalView{}, client.Principal{}},
	} {
		want, got := jsonFields(reflect.TypeOf(pair[0])), jsonFields(reflect.TypeOf(pair[1]))
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%T fields %v, want those of %T: %v", pair[1], got, pair[0], want)
		}
	}
	// An audit record marshals to the same bytes, field for field, so a client can recompute
	// the hash chain (fsm.ChainHash) from its own type.
	rec := fsm.AuditRecord{ID: "a", Seq: 7, Batch: 2, NodeID: "n1", NodeSeq: 3, SecretID: "s", Path: "p/q",
		VersionID: "v", PrincipalType: "USER", PrincipalID: "alice", AuthMethod: "userpass", Action: "READ",
		IPAddress: "10.0.0.1", Success: true, Reason: "r", RequestID: "req", AccessedAt: 12345}
	b1, _ := json.Marshal(rec)
	var crec client.AuditRecord
	if err := json.Unmarshal(b1, &crec); err != nil {
		t.Fatal(err)
	}
	if b2, _ := json.Marshal(crec); !bytes.Equal(b1, b2) {
		t.Errorf("client.AuditRecord marshals to\n%s\nwant\n%s", b2, b1)
	}
}

func TestIdentityLoginAndTokens(t *testing.T) {
	exp := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	fa := &fakeAccounts{login: store.Login{Token: "kw_new", Accessor: "acc-1", Principal: "USER/alice", ExpiresAt: exp}}
	c := identityServer(t, fa)
	ctx := context.Background()
	want := client.LoginResponse{Token: "kw_new", Accessor: "acc-1", Principal: "USER/alice", ExpiresAt: exp}

	// The public routes need no token.
	for _, tc := range []struct {
		call func() (*client.LoginResponse, error)
		want string
	}{
		{func() (*client.LoginResponse, error) { return c.Init(ctx, "root", "pw") }, `init root pw ""`},
		{func() (*client.LoginResponse, error) { return c.Init(ctx, "", "") }, `init   ""`},
		{func() (*client.LoginResponse, error) { return c.LoginUserpass(ctx, "alice", "s3cret") }, "userpass alice s3cret"},
		{func() (*client.LoginResponse, error) { return c.LoginAppRole(ctx, "rid", "sid") }, "approle rid sid"},
		{func() (*client.LoginResponse, error) { return c.LoginJWT(ctx, "a.b.c") }, "jwt a.b.c"},
	} {
		got, err := tc.call()
		if err != nil || *got != want {
			t.Errorf("%s: %+v, %v", tc.want, got, err)
		}
		wantCalls(t, fa, tc.want)
	}

	fa.initalized = true
	if ok, err := c.InitStatus(ctx); !ok || err != nil {
		t.Errorf("InitStatus = %v, %v", ok, err)
	}

	// Without a token the protected routes refuse; SetToken switches the client over.
	if _, err := c.TokenSelf(ctx); !client.IsCode(err, "unauthenticated") {
		t.Fatalf("TokenSelf without token: %v", err)
	}
	c.SetToken("kw_new")
	self, err := c.TokenSelf(ctx)
	if err != nil || !reflect.DeepEqual(*self, client.TokenInfo{PrincipalType: "USER", PrincipalID: "admin", Method: "token", Roles: []string{"ops"}, Admin: true}) {
		t.Errorf("TokenSelf = %+v, %v", self, err)
	}

	fa.login.Token = "" // a renewal carries no token text
	if got, err := c.RenewToken(ctx); err != nil || got.Token != "" || got.Accessor != "acc-1" || !got.ExpiresAt.Equal(exp) {
		t.Errorf("RenewToken = %+v, %v", got, err)
	}
	wantCalls(t, fa, "renew kw_new")

	for _, tc := range [][2]string{{"", ""}, {"kw_other", ""}, {"", "acc-9"}} {
		if err := c.RevokeToken(ctx, tc[0], tc[1]); err != nil {
			t.Errorf("RevokeToken(%q, %q): %v", tc[0], tc[1], err)
		}
	}
	wantCalls(t, fa, `revoke "" "" by kw_new`, `revoke "kw_other" "" by kw_new`, `revoke "" "acc-9" by kw_new`)

	c.SetToken("bad")
	if _, err := c.TokenSelf(ctx); !client.IsCode(err, "unauthenticated") {
		t.Errorf("TokenSelf with a bad token: %v", err)
	}
	c.SetToken("")

	// Login failures come back as API errors.
	fa.reset(fmt.Errorf("%w: wrong user name or password", store.ErrLoginFailed))
	_, err = c.LoginUserpass(ctx, "alice", "nope")
	if ae, ok := errors.AsType[*client.APIError](err); !ok || ae.Status != 401 || ae.Code != "login_failed" {
		t.Errorf("failed login: %v", err)
	}
	fa.reset(store.ErrAlreadyInitialized)
	if _, err := c.Init(ctx, "", ""); !client.IsCode(err, "already_initialized") {
		t.Errorf("second init: %v", err)
	}
}

func TestIdentityPrincipalsAndRoles(t *testing.T) {
	fa := &fakeAccounts{principals: []store.PrincipalView{
		{Type: fsm.PrincipalUser, ID: "alice", Roles: []string{"ops"}},
		{Type: fsm.PrincipalRole, ID: "ops", Admin: true},
	}}
	c := identityServer(t, fa)
	c.SetToken("t")
	ctx := context.Background()

	ps, err := c.Principals(ctx)
	want := []client.Principal{{Type: "USER", ID: "alice", Roles: []string{"ops"}}, {Type: "ROLE", ID: "ops", Admin: true}}
	if err != nil || !reflect.DeepEqual(ps, want) {
		t.Errorf("Principals = %+v, %v", ps, err)
	}
	wantCalls(t, fa, "principals")

	if err := c.PutPrincipal(ctx, client.PrincipalUser, "bob smith", "pw", []string{"ops", "dev"}, true); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, fa, "put USER/bob smith")
	if in := fa.principal; in.Password != "pw" || !reflect.DeepEqual(in.Roles, []string{"ops", "dev"}) || !in.Admin {
		t.Errorf("PutPrincipal sent %+v", in)
	}
	if err := c.PutPrincipal(ctx, client.PrincipalService, "web%41?", "", nil, false); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, fa, "put SERVICE/web%41?")
	if in := fa.principal; in.Password != "" || in.Roles != nil || in.Admin {
		t.Errorf("PutPrincipal sent %+v", in)
	}
	if err := c.DeletePrincipal(ctx, client.PrincipalRole, "ops"); err != nil {
		t.Fatal(err)
	}
	if err := c.AddRoleMember(ctx, "ops", client.PrincipalService, "web"); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveRoleMember(ctx, "ops", client.PrincipalUser, "alice"); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, fa, "delete ROLE/ops", "member ops SERVICE/web true", "member ops USER/alice false")

	// Ids that cannot travel in one URL segment never reach the server.
	for _, id := range []string{"", ".", "..", "spiffe://prod/web"} {
		if err := c.PutPrincipal(ctx, client.PrincipalService, id, "", nil, false); !errors.Is(err, client.ErrInvalidID) {
			t.Errorf("PutPrincipal(%q): %v", id, err)
		}
	}
	if err := c.DeleteAppRole(ctx, "a/b"); !errors.Is(err, client.ErrInvalidID) {
		t.Errorf("DeleteAppRole(a/b): %v", err)
	}
	wantCalls(t, fa)

	// The server's checks come back as API errors.
	if err := c.PutPrincipal(ctx, "GROUP", "x", "", nil, false); !client.IsCode(err, "invalid_argument") {
		t.Errorf("bad type: %v", err)
	}
	fa.reset(fmt.Errorf("role %q: %w", "nope", store.ErrNotFound))
	if err := c.AddRoleMember(ctx, "nope", client.PrincipalUser, "alice"); !client.IsCode(err, "not_found") {
		t.Errorf("missing role: %v", err)
	}
	fa.reset(store.ErrForbidden)
	if _, err := c.Principals(ctx); !client.IsCode(err, "forbidden") {
		t.Errorf("forbidden: %v", err)
	}
}

func TestIdentityGrants(t *testing.T) {
	fa := &fakeAccounts{grants: []fsm.Policy{{ID: "g-1", PathPattern: "prod/*", PrincipalType: fsm.PrincipalRole, PrincipalID: "ops",
		Actions: []fsm.Action{fsm.ActionRead, fsm.ActionWrite}, ExpiresAt: 99, CreatedAt: 11, CreatedBy: "USER/admin"}}}
	c := identityServer(t, fa)
	c.SetToken("t")
	ctx := context.Background()
	exp := time.Date(2027, 5, 6, 7, 8, 9, 0, time.UTC)

	id, err := c.Grant(ctx, client.GrantRequest{PrincipalType: "ROLE", PrincipalID: "ops", Actions: []string{"READ", "WRITE"}, Pattern: "prod/*", ExpiresAt: exp})
	if err != nil || id != "g-1" {
		t.Fatalf("Grant = %q, %v", id, err)
	}
	want := store.GrantInput{PrincipalType: fsm.PrincipalRole, PrincipalID: "ops", Actions: []fsm.Action{"READ", "WRITE"}, PathPattern: "prod/*", ExpiresAt: exp}
	if !reflect.DeepEqual(fa.grantIn, want) {
		t.Errorf("Grant sent %+v\nwant %+v", fa.grantIn, want)
	}
	if _, err := c.Grant(ctx, client.GrantRequest{PrincipalType: "USER", PrincipalID: "a", Actions: []string{"READ"}, Secret: "prod/db"}); err != nil {
		t.Fatal(err)
	}
	if fa.grantIn.SecretPath != "prod/db" || !fa.grantIn.ExpiresAt.IsZero() {
		t.Errorf("Grant sent %+v", fa.grantIn)
	}
	wantCalls(t, fa, "grant", "grant")

	gs, err := c.Grants(ctx, "ROLE", "ops")
	wantGrants := []client.Policy{{ID: "g-1", PathPattern: "prod/*", PrincipalType: "ROLE", PrincipalID: "ops", Actions: []string{"READ", "WRITE"}, ExpiresAt: 99, CreatedAt: 11, CreatedBy: "USER/admin"}}
	if err != nil || !reflect.DeepEqual(gs, wantGrants) {
		t.Errorf("Grants = %+v, %v", gs, err)
	}
	if _, err := c.Grants(ctx, "", ""); err != nil {
		t.Fatal(err)
	}
	if err := c.RevokeGrant(ctx, "g-1"); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, fa, `grants "ROLE" "ops"`, `grants "" ""`, "revoke-grant g-1")
}

func TestIdentityAppRolesAndJWT(t *testing.T) {
	exp := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	fa := &fakeAccounts{secretExp: exp, approles: []fsm.AppRole{{Name: "web", RoleID: "rid-1", Principal: "web-svc",
		SecretIDTTL: int64(10 * time.Minute), SecretIDUses: 3, CIDRs: []string{"10.0.0.0/8"}, TokenTTL: int64(time.Minute), TokenMaxTTL: int64(time.Hour)}}}
	c := identityServer(t, fa)
	c.SetToken("t")
	ctx := context.Background()

	rid, err := c.PutAppRole(ctx, "web", client.AppRoleRequest{Principal: "web-svc", SecretIDTTL: "10m", SecretIDUses: 3,
		CIDRs: []string{"10.0.0.0/8"}, TokenTTL: "1m", TokenMaxTTL: "1h"})
	if err != nil || rid != "rid-1" {
		t.Fatalf("PutAppRole = %q, %v", rid, err)
	}
	want := store.AppRoleInput{Name: "web", Principal: "web-svc", SecretIDTTL: 10 * time.Minute, SecretIDUses: 3,
		CIDRs: []string{"10.0.0.0/8"}, TokenTTL: time.Minute, TokenMaxTTL: time.Hour}
	if !reflect.DeepEqual(fa.appRoleIn, want) {
		t.Errorf("PutAppRole sent %+v\nwant %+v", fa.appRoleIn, want)
	}
	if _, err := c.PutAppRole(ctx, "min", client.AppRoleRequest{Principal: "p"}); err != nil {
		t.Fatal(err)
	}
	if fa.appRoleIn.SecretIDTTL != 0 || fa.appRoleIn.CIDRs != nil {
		t.Errorf("PutAppRole sent %+v", fa.appRoleIn)
	}
	if _, err := c.PutAppRole(ctx, "bad", client.AppRoleRequest{Principal: "p", TokenTTL: "soon"}); !client.IsCode(err, "invalid_argument") {
		t.Errorf("bad duration: %v", err)
	}

	as, err := c.AppRoles(ctx)
	wantRoles := []client.AppRole{{Name: "web", RoleID: "rid-1", Principal: "web-svc", SecretIDTTL: int64(10 * time.Minute),
		SecretIDUses: 3, CIDRs: []string{"10.0.0.0/8"}, TokenTTL: int64(time.Minute), TokenMaxTTL: int64(time.Hour)}}
	if err != nil || !reflect.DeepEqual(as, wantRoles) {
		t.Errorf("AppRoles = %+v, %v", as, err)
	}
	sid, sexp, err := c.MintSecretID(ctx, "web")
	if err != nil || sid != "sid_xyz" || !sexp.Equal(exp) {
		t.Errorf("MintSecretID = %q %v %v", sid, sexp, err)
	}
	fa.secretExp = time.Time{}
	if _, sexp, err := c.MintSecretID(ctx, "web"); err != nil || !sexp.IsZero() {
		t.Errorf("MintSecretID without expiry = %v %v", sexp, err)
	}
	if err := c.DeleteAppRole(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, fa, "put-approle web", "put-approle min", "approles", "mint web", "mint web", "delete-approle web")

	cfg := json.RawMessage(`{"issuer":"https://issuer.example","jwks_url":"https://issuer.example/jwks","audiences":["keyward"]}`)
	if err := c.PutJWTIssuer(ctx, "k8s", cfg, "15m", ""); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fa.jwtConfig, cfg) {
		t.Errorf("config sent %s", fa.jwtConfig)
	}
	if err := c.PutJWTIssuer(ctx, "k8s", cfg, "", "2h"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteJWTIssuer(ctx, "k8s"); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, fa, "put-jwt k8s 15m0s 0s", "put-jwt k8s 0s 2h0m0s", "delete-jwt k8s")
}

func TestIdentityAudit(t *testing.T) {
	recs := []fsm.AuditRecord{{ID: "r1", Seq: 5, Batch: 1, PrincipalType: "USER", PrincipalID: "alice", Action: "READ", Path: "prod/db", Success: true, AccessedAt: 77}}
	fa := &fakeAccounts{audit: recs, next: 5, report: store.ChainReport{OK: false, Batches: 3, Records: 9, BrokenBatch: 2, Reason: "x"}}
	c := identityServer(t, fa)
	c.SetToken("t")
	ctx := context.Background()
	from := time.Date(2026, 1, 1, 0, 0, 0, 500, time.FixedZone("X", 3600))
	to := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)

	got, next, err := c.AuditList(ctx, client.AuditQuery{Path: "prod/db", Principal: "alice", Action: "READ", Outcome: "success",
		From: from, To: to, After: 4, Limit: 1})
	if err != nil || next != 5 || len(got) != 1 || got[0].ID != "r1" || got[0].AccessedAt != 77 || !got[0].Success {
		t.Fatalf("AuditList = %+v %d %v", got, next, err)
	}
	f := fa.filter
	if f.Path != "prod/db" || f.Principal != "alice" || f.Action != "READ" || f.Outcome != "success" ||
		!f.From.Equal(from) || !f.To.Equal(to) || f.After != 4 || f.Limit != 1 {
		t.Errorf("filter %+v", f)
	}
	fa.audit, fa.next = nil, 0
	got, next, err = c.AuditList(ctx, client.AuditQuery{})
	if err != nil || next != 0 || len(got) != 0 || fa.filter.Limit != 100 {
		t.Errorf("AuditList default = %+v %d %v (filter %+v)", got, next, err, fa.filter)
	}

	rep, err := c.AuditVerify(ctx)
	if err != nil || *rep != (client.ChainReport{OK: false, Batches: 3, Records: 9, BrokenBatch: 2, Reason: "x"}) {
		t.Errorf("AuditVerify = %+v, %v", rep, err)
	}
	wantCalls(t, fa, "audit", "audit", "verify")

	fa.reset(store.ErrForbidden)
	if _, _, err := c.AuditList(ctx, client.AuditQuery{}); !client.IsCode(err, "forbidden") {
		t.Errorf("AuditList forbidden: %v", err)
	}
	var buf bytes.Buffer
	if err := c.AuditExport(ctx, &buf); !client.IsCode(err, "forbidden") || buf.Len() != 0 {
		t.Errorf("AuditExport forbidden: %v (%d bytes)", err, buf.Len())
	}
}

func TestAuditExportStreamsPastResponseCap(t *testing.T) {
	// Over 2 MiB of export: the streaming call is not capped like the JSON answers are.
	fa := &fakeAccounts{}
	var want bytes.Buffer
	enc := json.NewEncoder(&want)
	for b := uint64(1); b <= 200; b++ {
		first := (b-1)*100 + 1
		l := store.AuditExportLine{Batch: &fsm.AuditBatch{Seq: b, First: first, Last: first + 99, Prev: strings.Repeat("0", 64), Hash: strings.Repeat("f", 64)}}
		fa.export = append(fa.export, l)
		_ = enc.Encode(l)
		for s := first; s <= first+99; s++ {
			l := store.AuditExportLine{Record: &fsm.AuditRecord{ID: fmt.Sprintf("rec-%d", s), Seq: s, Batch: b, PrincipalID: "alice",
				Action: "READ", Path: "prod/some/long/path/for/padding", Success: true, AccessedAt: int64(s)}}
			fa.export = append(fa.export, l)
			_ = enc.Encode(l)
		}
	}
	if want.Len() <= 2<<20 {
		t.Fatalf("export of %d bytes is not over the cap", want.Len())
	}
	c := identityServer(t, fa)
	c.SetToken("t")
	var got bytes.Buffer
	if err := c.AuditExport(context.Background(), &got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("export differs: %d bytes, want %d", got.Len(), want.Len())
	}
	// Each line decodes into the client's own type.
	dec := json.NewDecoder(&got)
	dec.DisallowUnknownFields()
	n := 0
	for dec.More() {
		var l client.AuditExportLine
		if err := dec.Decode(&l); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != len(fa.export) {
		t.Errorf("decoded %d lines, want %d", n, len(fa.export))
	}
}

func TestIdentityRequestEncoding(t *testing.T) {
	// The exact requests on the wire, for what the API server would take either way.
	type req struct{ method, path, body string }
	var got []req
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b bytes.Buffer
		_, _ = b.ReadFrom(r.Body)
		got = append(got, req{r.Method, r.URL.EscapedPath(), b.String()})
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"token":"t","accessor":"a","principal":"USER/x","id":"g","role_id":"r","secret_id":"s","expires_at":"0001-01-01T00:00:00Z"}`))
	}))
	t.Cleanup(srv.Close)
	c, err := client.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, _ = c.Init(ctx, "", "")
	_ = c.RevokeToken(ctx, "", "")
	_, _ = c.RenewToken(ctx)
	_ = c.PutPrincipal(ctx, "USER", "a b", "", nil, false)
	_ = c.AddRoleMember(ctx, "ops", "SERVICE", "web#1")
	_, _, _ = c.MintSecretID(ctx, "web")
	_, _ = c.Grant(ctx, client.GrantRequest{PrincipalType: "USER", PrincipalID: "a", Pattern: "p/*"})
	want := []req{
		{"POST", "/v1/sys/init", `{}`},
		{"POST", "/v1/auth/token/revoke", ""},
		{"POST", "/v1/auth/token/renew", ""},
		{"PUT", "/v1/sys/principals/USER/a%20b", `{}`},
		{"PUT", "/v1/sys/roles/ops/members/SERVICE/web%231", ""},
		{"POST", "/v1/sys/approles/web/secret-id", ""},
		{"POST", "/v1/sys/grants", `{"principal_type":"USER","principal_id":"a","actions":[],"pattern":"p/*"}`},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("requests\n%q\nwant\n%q", got, want)
	}
}
