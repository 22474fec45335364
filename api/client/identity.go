package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ErrInvalidID: a principal id, role, AppRole, issuer or grant name that must travel as one URL
// segment is empty, is "." or "..", or holds a '/'; the API cannot address it.
var ErrInvalidID = errors.New("invalid id")

// Principal types.
const (
	PrincipalUser    = "USER"
	PrincipalService = "SERVICE"
	PrincipalRole    = "ROLE"
)

// SetToken makes the client send token from now on ("" sends none), for instance the one a
// login returned. Unlike the rest of the Client it must not race with requests in flight: call
// it before sharing the client between goroutines.
func (c *Client) SetToken(token string) { c.token = token }

// LoginResponse is the answer of init, a login or a renewal. Token is empty on a renewal.
// ExpiresAt is zero for a token that does not expire (the initial admin token).
type LoginResponse struct {
	Token     string    `json:"token,omitempty"`
	Accessor  string    `json:"accessor"`
	Principal string    `json:"principal"` // TYPE/ID
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// TokenInfo describes the caller, as GET /v1/auth/token/self tells it.
type TokenInfo struct {
	PrincipalType string   `json:"principal_type"`
	PrincipalID   string   `json:"principal_id"`
	Method        string   `json:"method"`
	Roles         []string `json:"roles"`
	Admin         bool     `json:"admin"`
}

// Principal is a user, service or role as listed by the API (never with its password hash).
type Principal struct {
	Type  string   `json:"type"`
	ID    string   `json:"id"`
	Roles []string `json:"roles,omitempty"`
	Admin bool     `json:"admin,omitempty"`
}

// Policy is a grant of actions on one secret (SecretID) or a path pattern (PathPattern) to one
// principal. Times are Unix nanoseconds; ExpiresAt 0 never expires.
type Policy struct {
	ID            string   `json:"id"`
	SecretID      string   `json:"secret_id,omitempty"`
	PathPattern   string   `json:"path_pattern,omitempty"`
	PrincipalType string   `json:"principal_type"`
	PrincipalID   string   `json:"principal_id"`
	Actions       []string `json:"actions"`
	ExpiresAt     int64    `json:"expires_at,omitempty"`
	CreatedAt     int64    `json:"created_at"`
	CreatedBy     string   `json:"created_by,omitempty"`
}

// GrantRequest grants Actions (READ, WRITE, DELETE, ROTATE) to a principal on one secret, by
// path, or on a path pattern such as "prod/*"; exactly one of Secret and Pattern is set.
// A zero ExpiresAt never expires.
type GrantRequest struct {
	PrincipalType string    `json:"principal_type"`
	PrincipalID   string    `json:"principal_id"`
	Actions       []string  `json:"actions"`
	Secret        string    `json:"secret,omitempty"`
	Pattern       string    `json:"pattern,omitempty"`
	ExpiresAt     time.Time `json:"expires_at,omitzero"`
}

// AppRole lets a workload log in with a role id and a secret id. Durations are nanoseconds; 0
// means the server's default (SecretIDTTL 0: secret ids do not expire; SecretIDUses 0:
// unlimited; no CIDRs: any client address).
type AppRole struct {
	Name         string   `json:"name"`
	RoleID       string   `json:"role_id"`
	Principal    string   `json:"principal"` // the SERVICE principal a login becomes
	SecretIDTTL  int64    `json:"secret_id_ttl,omitempty"`
	SecretIDUses int      `json:"secret_id_uses,omitempty"`
	CIDRs        []string `json:"cidrs,omitempty"`
	TokenTTL     int64    `json:"token_ttl,omitempty"`
	TokenMaxTTL  int64    `json:"token_max_ttl,omitempty"`
}

// AppRoleRequest creates or replaces an AppRole. Durations are Go durations such as "10m";
// empty leaves the server's default.
type AppRoleRequest struct {
	Principal    string   `json:"principal"`
	SecretIDTTL  string   `json:"secret_id_ttl,omitempty"`
	SecretIDUses int      `json:"secret_id_uses,omitempty"`
	CIDRs        []string `json:"cidrs,omitempty"`
	TokenTTL     string   `json:"token_ttl,omitempty"`
	TokenMaxTTL  string   `json:"token_max_ttl,omitempty"`
}

// AuditRecord is one committed audit record. It never holds a value or a token. AccessedAt
// is Unix nanoseconds.
type AuditRecord struct {
	ID            string `json:"id"`
	Seq           uint64 `json:"seq,omitempty"`
	Batch         uint64 `json:"batch,omitempty"`
	NodeID        string `json:"node_id,omitempty"`
	SecretID      string `json:"secret_id,omitempty"`
	Path          string `json:"path,omitempty"`
	VersionID     string `json:"version_id,omitempty"`
	PrincipalType string `json:"principal_type,omitempty"`
	PrincipalID   string `json:"principal_id"`
	AuthMethod    string `json:"auth_method,omitempty"`
	Action        string `json:"action"`
	IPAddress     string `json:"ip_address,omitempty"`
	Success       bool   `json:"success"`
	Reason        string `json:"reason,omitempty"`
	RequestID     string `json:"request_id,omitempty"`
	AccessedAt    int64  `json:"accessed_at"`
	NodeSeq       uint64 `json:"node_seq,omitempty"`
}

// AuditBatch is one committed batch of audit records, a link of the hash chain.
type AuditBatch struct {
	Seq   uint64 `json:"seq"`
	First uint64 `json:"first"`
	Last  uint64 `json:"last"`
	Prev  string `json:"prev"`
	Hash  string `json:"hash"`
}

// AuditExportLine is one JSON line of an audit export: a batch header, followed by its records.
type AuditExportLine struct {
	Batch  *AuditBatch     `json:"batch,omitempty"`
	Record *AuditRecord    `json:"record,omitempty"`
	End    *AuditExportEnd `json:"end,omitempty"`
}

// AuditExportEnd is the last line of an export: totals and the head hash.
type AuditExportEnd struct {
	Batches uint64 `json:"batches"`
	Records uint64 `json:"records"`
	Head    string `json:"head"`
}

// AuditQuery selects audit records; zero fields match everything. Outcome is "", "success" or
// "failure"; From is inclusive and To exclusive. After is the next cursor of a previous page;
// Limit 0 takes the server default (100), at most 1000.
type AuditQuery struct {
	Path      string
	Principal string // principal id
	Action    string
	Outcome   string
	From, To  time.Time
	After     uint64
	Limit     int
}

// ChainReport is the outcome of a check of the audit hash chain. When OK is false,
// BrokenBatch is the first batch that does not check out and Reason says how.
type ChainReport struct {
	OK          bool   `json:"ok"`
	Batches     uint64 `json:"batches"`
	Records     uint64 `json:"records"`
	BrokenBatch uint64 `json:"broken_batch,omitempty"`
	Reason      string `json:"reason,omitempty"`
}

// segments joins parts into a relative URL path, one part per segment, refusing parts that
// cannot travel as one segment.
func segments(parts ...string) (string, error) {
	for _, p := range parts {
		switch {
		case p == "":
			return "", fmt.Errorf("%w: an id or name is empty", ErrInvalidID)
		case p == "." || p == "..":
			return "", fmt.Errorf("%w: %q is not an id the API can address", ErrInvalidID, p)
		case strings.Contains(p, "/"):
			return "", fmt.Errorf("%w: %q holds a '/', which the API cannot address in a URL", ErrInvalidID, p)
		}
	}
	return strings.Join(parts, "/"), nil
}

// sysCall is a call to endpoint followed by the segments parts.
func sysCall(method, endpoint string, body any, parts ...string) (call, error) {
	p, err := segments(parts...)
	if err != nil {
		return call{}, err
	}
	return call{method: method, endpoint: endpoint, path: p, body: body}, nil
}

// doSys sends a sysCall and decodes its answer into out.
func (c *Client) doSys(ctx context.Context, method, endpoint string, body, out any, parts ...string) error {
	k, err := sysCall(method, endpoint, body, parts...)
	if err != nil {
		return err
	}
	_, _, err = c.do(ctx, k, out)
	return err
}

// login posts body to endpoint, without credentials, and decodes a LoginResponse.
func (c *Client) login(ctx context.Context, endpoint string, body any) (*LoginResponse, error) {
	return c.postLogin(ctx, call{method: http.MethodPost, endpoint: endpoint, noPath: true, body: body, auth: authNone})
}

// postLogin sends k and decodes a LoginResponse.
func (c *Client) postLogin(ctx context.Context, k call) (*LoginResponse, error) {
	var out LoginResponse
	if _, _, err := c.do(ctx, k, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Init initializes the cluster once: it creates the admin USER (admin "" means "admin"; a
// non-empty password lets it log in with userpass too) and returns its token, which does not
// expire until revoked. It needs no token.
func (c *Client) Init(ctx context.Context, admin, password string) (*LoginResponse, error) {
	return c.login(ctx, "/v1/sys/init", struct {
		Admin    string `json:"admin,omitempty"`
		Password string `json:"password,omitempty"`
	}{admin, password})
}

// InitStatus reports whether the cluster has been initialized, as the node asked knows it.
func (c *Client) InitStatus(ctx context.Context) (bool, error) {
	var out struct {
		Initialized *bool `json:"initialized"`
	}
	if _, _, err := c.do(ctx, call{method: http.MethodGet, endpoint: "/v1/sys/init", noPath: true}, &out); err != nil {
		return false, err
	}
	if out.Initialized == nil {
		return false, fmt.Errorf("GET /v1/sys/init: %w: no \"initialized\"", ErrMalformedResponse)
	}
	return *out.Initialized, nil
}

// LoginUserpass logs a user in with a password.
func (c *Client) LoginUserpass(ctx context.Context, username, password string) (*LoginResponse, error) {
	return c.login(ctx, "/v1/auth/userpass/login", struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}{username, password})
}

// LoginAppRole logs a workload in with an AppRole's role id and a secret id.
func (c *Client) LoginAppRole(ctx context.Context, roleID, secretID string) (*LoginResponse, error) {
	return c.login(ctx, "/v1/auth/approle/login", struct {
		RoleID   string `json:"role_id"`
		SecretID string `json:"secret_id"`
	}{roleID, secretID})
}

// LoginJWT logs in with a JWT signed by a trusted issuer.
func (c *Client) LoginJWT(ctx context.Context, jwt string) (*LoginResponse, error) {
	return c.login(ctx, "/v1/auth/jwt/login", struct {
		JWT string `json:"jwt"`
	}{jwt})
}

// TokenSelf describes the caller: the principal of the client's token (or certificate).
func (c *Client) TokenSelf(ctx context.Context) (*TokenInfo, error) {
	var out TokenInfo
	if _, _, err := c.do(ctx, call{method: http.MethodGet, endpoint: "/v1/auth/token/self", noPath: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RenewToken extends the client's token by its TTL, up to its maximum lifetime. The answer
// carries no token text.
func (c *Client) RenewToken(ctx context.Context) (*LoginResponse, error) {
	return c.postLogin(ctx, call{method: http.MethodPost, endpoint: "/v1/auth/token/renew", noPath: true})
}

// RevokeToken revokes a token: the client's own when token and accessor are both empty, the
// one given by text, or (admins) the one with the given accessor.
func (c *Client) RevokeToken(ctx context.Context, token, accessor string) error {
	k := call{method: http.MethodPost, endpoint: "/v1/auth/token/revoke", noPath: true}
	if token != "" || accessor != "" {
		k.body = struct {
			Token    string `json:"token,omitempty"`
			Accessor string `json:"accessor,omitempty"`
		}{token, accessor}
	}
	_, _, err := c.do(ctx, k, nil)
	return err
}

// Principals lists every user, service and role.
func (c *Client) Principals(ctx context.Context) ([]Principal, error) {
	var out struct {
		Principals []Principal `json:"principals"`
	}
	if _, _, err := c.do(ctx, call{method: http.MethodGet, endpoint: "/v1/sys/principals", noPath: true}, &out); err != nil {
		return nil, err
	}
	return out.Principals, nil
}

// PutPrincipal creates or replaces the principal typ/id (typ is USER, SERVICE or ROLE) with
// exactly these roles and admin flag. A non-empty password (users only) sets a new one; an
// empty one keeps the current password.
func (c *Client) PutPrincipal(ctx context.Context, typ, id, password string, roles []string, admin bool) error {
	body := struct {
		Password string   `json:"password,omitempty"`
		Roles    []string `json:"roles,omitempty"`
		Admin    bool     `json:"admin,omitempty"`
	}{password, roles, admin}
	return c.doSys(ctx, http.MethodPut, "/v1/sys/principals", body, nil, typ, id)
}

// DeletePrincipal removes the principal typ/id.
func (c *Client) DeletePrincipal(ctx context.Context, typ, id string) error {
	return c.doSys(ctx, http.MethodDelete, "/v1/sys/principals", nil, nil, typ, id)
}

// AddRoleMember makes the principal typ/id a member of role.
func (c *Client) AddRoleMember(ctx context.Context, role, typ, id string) error {
	return c.doSys(ctx, http.MethodPut, "/v1/sys/roles", nil, nil, role, "members", typ, id)
}

// RemoveRoleMember takes the principal typ/id out of role.
func (c *Client) RemoveRoleMember(ctx context.Context, role, typ, id string) error {
	return c.doSys(ctx, http.MethodDelete, "/v1/sys/roles", nil, nil, role, "members", typ, id)
}

// Grant stores a grant and returns its id.
func (c *Client) Grant(ctx context.Context, g GrantRequest) (string, error) {
	if g.Actions == nil {
		g.Actions = []string{}
	}
	var out struct {
		ID string `json:"id"`
	}
	if _, _, err := c.do(ctx, call{method: http.MethodPost, endpoint: "/v1/sys/grants", noPath: true, body: g}, &out); err != nil {
		return "", err
	}
	if out.ID == "" {
		return "", fmt.Errorf("POST /v1/sys/grants: %w: no grant id", ErrMalformedResponse)
	}
	return out.ID, nil
}

// RevokeGrant removes the grant id.
func (c *Client) RevokeGrant(ctx context.Context, id string) error {
	return c.doSys(ctx, http.MethodDelete, "/v1/sys/grants", nil, nil, id)
}

// Grants lists grants, of one principal type and/or id when they are not empty.
func (c *Client) Grants(ctx context.Context, typ, id string) ([]Policy, error) {
	q := url.Values{}
	if typ != "" {
		q.Set("principal_type", typ)
	}
	if id != "" {
		q.Set("principal_id", id)
	}
	var out struct {
		Grants []Policy `json:"grants"`
	}
	if _, _, err := c.do(ctx, call{method: http.MethodGet, endpoint: "/v1/sys/grants", noPath: true, query: q}, &out); err != nil {
		return nil, err
	}
	return out.Grants, nil
}

// AppRoles lists the AppRoles.
func (c *Client) AppRoles(ctx context.Context) ([]AppRole, error) {
	var out struct {
		AppRoles []AppRole `json:"approles"`
	}
	if _, _, err := c.do(ctx, call{method: http.MethodGet, endpoint: "/v1/sys/approles", noPath: true}, &out); err != nil {
		return nil, err
	}
	return out.AppRoles, nil
}

// PutAppRole creates or replaces the AppRole name and returns its role id, which stays the
// same when the AppRole is replaced.
func (c *Client) PutAppRole(ctx context.Context, name string, r AppRoleRequest) (string, error) {
	var out struct {
		RoleID string `json:"role_id"`
	}
	if err := c.doSys(ctx, http.MethodPut, "/v1/sys/approles", r, &out, name); err != nil {
		return "", err
	}
	if out.RoleID == "" {
		return "", fmt.Errorf("PUT /v1/sys/approles: %w: no role id", ErrMalformedResponse)
	}
	return out.RoleID, nil
}

// DeleteAppRole removes the AppRole name and its secret ids.
func (c *Client) DeleteAppRole(ctx context.Context, name string) error {
	return c.doSys(ctx, http.MethodDelete, "/v1/sys/approles", nil, nil, name)
}

// MintSecretID creates a secret id for the AppRole name. Its text is returned only here;
// expiresAt is zero when it does not expire.
func (c *Client) MintSecretID(ctx context.Context, name string) (secretID string, expiresAt time.Time, err error) {
	var out struct {
		SecretID  string    `json:"secret_id"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := c.doSys(ctx, http.MethodPost, "/v1/sys/approles", nil, &out, name, "secret-id"); err != nil {
		return "", time.Time{}, err
	}
	if out.SecretID == "" {
		return "", time.Time{}, fmt.Errorf("POST /v1/sys/approles: %w: no secret id", ErrMalformedResponse)
	}
	return out.SecretID, out.ExpiresAt, nil
}

// PutJWTIssuer creates or replaces the trusted JWT issuer name. config is its JSON (issuer,
// jwks/jwks_file/jwks_url, audiences, principal_claim, bound_claims, algorithms); ttl and
// maxTTL are Go durations such as "15m" for the tokens its logins get, "" for the defaults.
func (c *Client) PutJWTIssuer(ctx context.Context, name string, config json.RawMessage, ttl, maxTTL string) error {
	body := struct {
		Config      json.RawMessage `json:"config"`
		TokenTTL    string          `json:"token_ttl,omitempty"`
		TokenMaxTTL string          `json:"token_max_ttl,omitempty"`
	}{config, ttl, maxTTL}
	return c.doSys(ctx, http.MethodPut, "/v1/sys/auth/jwt", body, nil, name)
}

// DeleteJWTIssuer removes the JWT issuer name.
func (c *Client) DeleteJWTIssuer(ctx context.Context, name string) error {
	return c.doSys(ctx, http.MethodDelete, "/v1/sys/auth/jwt", nil, nil, name)
}

// AuditList returns one page of committed audit records in order, and the cursor to pass as
// After for the next page (0 on the last page).
func (c *Client) AuditList(ctx context.Context, q AuditQuery) (records []AuditRecord, next uint64, err error) {
	v := url.Values{}
	for k, s := range map[string]string{"path": q.Path, "principal": q.Principal, "action": q.Action, "outcome": q.Outcome} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if !q.From.IsZero() {
		v.Set("from", q.From.UTC().Format(time.RFC3339Nano))
	}
	if !q.To.IsZero() {
		v.Set("to", q.To.UTC().Format(time.RFC3339Nano))
	}
	if q.After != 0 {
		v.Set("after", strconv.FormatUint(q.After, 10))
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var out struct {
		Records []AuditRecord `json:"records"`
		Next    uint64        `json:"next"`
	}
	if _, _, err := c.do(ctx, call{method: http.MethodGet, endpoint: "/v1/sys/audit", noPath: true, query: v}, &out); err != nil {
		return nil, 0, err
	}
	return out.Records, out.Next, nil
}

// AuditExport streams the committed audit log into w as JSON lines (AuditExportLine: each
// batch header followed by its records, in chain order). The body is not size-capped and the
// call is not bound by the client's request timeout: bound it with ctx.
func (c *Client) AuditExport(ctx context.Context, w io.Writer) error {
	const what = "GET /v1/sys/audit/export"
	resp, err := c.stream(ctx, http.MethodGet, "/v1/sys/audit/export", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
		if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
			return fmt.Errorf("%s: %w: HTTP %d", what, ErrMalformedResponse, resp.StatusCode)
		}
		return decodeError(resp.StatusCode, resp.Header, body)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// AuditVerify asks the cluster to recompute the hash chain of the committed audit log.
func (c *Client) AuditVerify(ctx context.Context) (*ChainReport, error) {
	var out ChainReport
	if _, _, err := c.do(ctx, call{method: http.MethodGet, endpoint: "/v1/sys/audit/verify", noPath: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
