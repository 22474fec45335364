package fsm

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
)

// Principal is a user, service or role. Users may hold a password hash (argon2id, PHC string);
// principals belong to roles by name; Admin grants administration rights (principals, roles,
// grants, auth config, cluster, snapshots, audit reading).
type Principal struct {
	Type         PrincipalType `json:"type"`
	ID           string        `json:"id"`
	PasswordHash string        `json:"password_hash,omitempty"`
	Roles        []string      `json:"roles,omitempty"`
	Admin        bool          `json:"admin,omitempty"`
	CreatedAt    int64         `json:"created_at"`
	CreatedBy    string        `json:"created_by,omitempty"`
}

// PrincipalKey is the object key of a principal.
func PrincipalKey(t PrincipalType, id string) string { return string(t) + "/" + id }

// Token is a login session. Only the SHA-256 of the token text is stored. ExpiresAt 0 means
// it never expires (the initial admin token, until revoked).
type Token struct {
	Hash          string        `json:"hash"`     // hex SHA-256 of the token text
	Accessor      string        `json:"accessor"` // public id, to list and revoke without the token
	PrincipalType PrincipalType `json:"principal_type"`
	PrincipalID   string        `json:"principal_id"`
	Method        string        `json:"method"` // root, userpass, approle, jwt
	TTL           int64         `json:"ttl"`    // renewal extends ExpiresAt by this, up to MaxExpiresAt
	IssuedAt      int64         `json:"issued_at"`
	ExpiresAt     int64         `json:"expires_at,omitempty"`
	MaxExpiresAt  int64         `json:"max_expires_at,omitempty"`
	Revoked       bool          `json:"revoked,omitempty"`
}

// AppRole lets a workload log in with a role id and a secret id.
type AppRole struct {
	Name         string   `json:"name"`
	RoleID       string   `json:"role_id"`
	Principal    string   `json:"principal"` // SERVICE principal id the login becomes
	SecretIDTTL  int64    `json:"secret_id_ttl,omitempty"`
	SecretIDUses int      `json:"secret_id_uses,omitempty"` // 0 = unlimited
	CIDRs        []string `json:"cidrs,omitempty"`          // allowed client addresses; empty = any
	TokenTTL     int64    `json:"token_ttl,omitempty"`
	TokenMaxTTL  int64    `json:"token_max_ttl,omitempty"`
}

// SecretID is a minted AppRole secret id (only its hash is stored).
type SecretID struct {
	Hash      string `json:"hash"`
	AppRole   string `json:"approle"`
	ExpiresAt int64  `json:"expires_at,omitempty"`
	UsesLeft  int    `json:"uses_left,omitempty"` // meaningful when Limited
	Limited   bool   `json:"limited,omitempty"`
	CreatedAt int64  `json:"created_at"`
}

// JWTIssuer is a trusted JWT/OIDC issuer; Config is its JSON (see store/jwtauth.Issuer), kept
// opaque here.
type JWTIssuer struct {
	Name        string          `json:"name"`
	Config      json.RawMessage `json:"config"`
	TokenTTL    int64           `json:"token_ttl,omitempty"`
	TokenMaxTTL int64           `json:"token_max_ttl,omitempty"`
}

// ClusterMeta holds cluster-wide facts.
type ClusterMeta struct {
	Initialized bool  `json:"initialized"`
	InitAt      int64 `json:"init_at,omitempty"`
}

// AuditMark is the highest NodeSeq committed for one node.
type AuditMark struct {
	NodeID string `json:"node_id"`
	Seq    uint64 `json:"seq"`
}

// Errors of identity commands.
var (
	ErrAlreadyInitialized = fmt.Errorf("%w: cluster is already initialized", ErrInvalid)
	ErrDenied             = fmt.Errorf("login refused")
)

// Identity commands.
const (
	CmdInit            CommandType = 40
	CmdPutPrincipal    CommandType = 41
	CmdDeletePrincipal CommandType = 42
	CmdCreateToken     CommandType = 43
	CmdRenewToken      CommandType = 44
	CmdRevokeToken     CommandType = 45
	CmdPutAppRole      CommandType = 46
	CmdDeleteAppRole   CommandType = 47
	CmdCreateSecretID  CommandType = 48
	CmdAppRoleLogin    CommandType = 49
	CmdPutJWTIssuer    CommandType = 50
	CmdDeleteJWTIssuer CommandType = 51
	CmdPruneAudit      CommandType = 52
)

// PruneAudit drops committed audit batches (with their records) whose newest record is older
// than Before. Batch headers of what remains keep the chain: verification starts at the first
// remaining batch, anchored on its Prev hash.
type PruneAudit struct {
	Before int64 `json:"before"`
}

// Init initializes the cluster once: the first admin and its token.
type Init struct {
	Admin Principal `json:"admin"`
	Token Token     `json:"token"`
	At    int64     `json:"at"`
}

// PutPrincipal creates or replaces a principal.
type PutPrincipal struct {
	Principal Principal `json:"principal"`
}

// DeletePrincipal removes a principal.
type DeletePrincipal struct {
	Type PrincipalType `json:"type"`
	ID   string        `json:"id"`
}

// CreateToken stores a new token (login by password or JWT, verified by the proposer).
type CreateToken struct {
	Token Token `json:"token"`
}

// RenewToken extends a live token to min(At+TTL, MaxExpiresAt).
type RenewToken struct {
	Hash string `json:"hash"`
	At   int64  `json:"at"`
}

// RevokeToken revokes a token by hash or accessor.
type RevokeToken struct {
	Hash     string `json:"hash,omitempty"`
	Accessor string `json:"accessor,omitempty"`
}

// PutAppRole creates or replaces an AppRole.
type PutAppRole struct {
	AppRole AppRole `json:"approle"`
}

// DeleteAppRole removes an AppRole and its secret ids.
type DeleteAppRole struct {
	Name string `json:"name"`
}

// CreateSecretID stores a minted secret id.
type CreateSecretID struct {
	SecretID SecretID `json:"secret_id"`
}

// AppRoleLogin consumes one use of a secret id and creates a token, all or nothing. The
// proposer hashes the presented secret id; Apply checks role id, expiry (against At), uses
// and the client address (RemoteIP) against the role's CIDRs, so every node agrees.
type AppRoleLogin struct {
	RoleID       string `json:"role_id"`
	SecretIDHash string `json:"secret_id_hash"`
	RemoteIP     string `json:"remote_ip"`
	At           int64  `json:"at"`
	Token        Token  `json:"token"` // Principal fields and expiries are filled in by Apply
}

// PutJWTIssuer creates or replaces a JWT issuer.
type PutJWTIssuer struct {
	Issuer JWTIssuer `json:"issuer"`
}

// DeleteJWTIssuer removes one.
type DeleteJWTIssuer struct {
	Name string `json:"name"`
}

func (f *FSM) identityHandlers() map[CommandType]handler {
	return map[CommandType]handler{
		CmdInit:            decodeInto(applyInit),
		CmdPutPrincipal:    decodeInto(applyPutPrincipal),
		CmdDeletePrincipal: decodeInto(applyDeletePrincipal),
		CmdCreateToken:     decodeInto(applyCreateToken),
		CmdRenewToken:      decodeInto(applyRenewToken),
		CmdRevokeToken:     decodeInto(applyRevokeToken),
		CmdPutAppRole:      decodeInto(applyPutAppRole),
		CmdDeleteAppRole:   decodeInto(applyDeleteAppRole),
		CmdCreateSecretID:  decodeInto(applyCreateSecretID),
		CmdAppRoleLogin:    decodeInto(applyAppRoleLogin),
		CmdPutJWTIssuer:    decodeInto(applyPutJWTIssuer),
		CmdDeleteJWTIssuer: decodeInto(applyDeleteJWTIssuer),
		CmdPruneAudit:      decodeInto(applyPruneAudit),
	}
}

func validPrincipal(p *Principal) error {
	switch p.Type {
	case PrincipalUser, PrincipalService, PrincipalRole:
	default:
		return fmt.Errorf("%w: unknown principal type %q", ErrInvalid, p.Type)
	}
	if p.ID == "" || len(p.ID) > 512 {
		return fmt.Errorf("%w: principal id must be 1-512 bytes", ErrInvalid)
	}
	return nil
}

func applyInit(tx *txn, c *Init) *Result {
	if m, ok := getObject[ClusterMeta](tx.objs(), KindMeta, "cluster"); ok && m.Initialized {
		return fail(ErrAlreadyInitialized)
	}
	if err := validPrincipal(&c.Admin); err != nil {
		return fail(err)
	}
	if c.Token.Hash == "" {
		return fail(fmt.Errorf("%w: init needs a token", ErrInvalid))
	}
	admin := c.Admin
	admin.Admin = true
	tok := c.Token
	tok.PrincipalType, tok.PrincipalID = admin.Type, admin.ID
	tx.putObject(KindPrincipal, PrincipalKey(admin.Type, admin.ID), &admin)
	tx.putObject(KindToken, tok.Hash, &tok)
	tx.putObject(KindMeta, "cluster", &ClusterMeta{Initialized: true, InitAt: c.At})
	return &Result{}
}

func applyPutPrincipal(tx *txn, c *PutPrincipal) *Result {
	p := c.Principal
	if err := validPrincipal(&p); err != nil {
		return fail(err)
	}
	slices.Sort(p.Roles)
	p.Roles = slices.Compact(p.Roles)
	tx.putObject(KindPrincipal, PrincipalKey(p.Type, p.ID), &p)
	return &Result{}
}

func applyDeletePrincipal(tx *txn, c *DeletePrincipal) *Result {
	key := PrincipalKey(c.Type, c.ID)
	if _, ok := getObject[Principal](tx.objs(), KindPrincipal, key); !ok {
		return fail(ErrNotFound)
	}
	tx.deleteObject(KindPrincipal, key)
	return &Result{}
}

func applyCreateToken(tx *txn, c *CreateToken) *Result {
	t := c.Token
	if t.Hash == "" || t.PrincipalID == "" {
		return fail(fmt.Errorf("%w: token needs a hash and a principal", ErrInvalid))
	}
	if _, exists := getObject[Token](tx.objs(), KindToken, t.Hash); exists {
		return fail(fmt.Errorf("%w: token exists", ErrInvalid))
	}
	tx.putObject(KindToken, t.Hash, &t)
	return &Result{Token: &t}
}

func applyRenewToken(tx *txn, c *RenewToken) *Result {
	t, ok := getObject[Token](tx.objs(), KindToken, c.Hash)
	if !ok || t.Revoked || (t.ExpiresAt != 0 && c.At >= t.ExpiresAt) {
		return fail(ErrNotFound)
	}
	next := *t
	if next.ExpiresAt != 0 {
		next.ExpiresAt = c.At + next.TTL
		if next.MaxExpiresAt != 0 && next.ExpiresAt > next.MaxExpiresAt {
			next.ExpiresAt = next.MaxExpiresAt
		}
	}
	tx.putObject(KindToken, next.Hash, &next)
	return &Result{Token: &next}
}

func applyRevokeToken(tx *txn, c *RevokeToken) *Result {
	var t *Token
	if c.Hash != "" {
		t, _ = getObject[Token](tx.objs(), KindToken, c.Hash)
	} else if c.Accessor != "" {
		eachObject(tx.objs(), KindToken, func(_ string, v *Token) bool {
			if v.Accessor == c.Accessor {
				t = v
				return false
			}
			return true
		})
	}
	if t == nil {
		return fail(ErrNotFound)
	}
	next := *t
	next.Revoked = true
	tx.putObject(KindToken, next.Hash, &next)
	return &Result{Token: &next}
}

func applyPutAppRole(tx *txn, c *PutAppRole) *Result {
	a := c.AppRole
	if a.Name == "" || a.RoleID == "" || a.Principal == "" {
		return fail(fmt.Errorf("%w: approle needs a name, role id and principal", ErrInvalid))
	}
	for _, cidr := range a.CIDRs {
		if _, err := netip.ParsePrefix(cidr); err != nil {
			return fail(fmt.Errorf("%w: bad CIDR %q", ErrInvalid, cidr))
		}
	}
	tx.putObject(KindAppRole, a.Name, &a)
	return &Result{}
}

func applyDeleteAppRole(tx *txn, c *DeleteAppRole) *Result {
	if _, ok := getObject[AppRole](tx.objs(), KindAppRole, c.Name); !ok {
		return fail(ErrNotFound)
	}
	tx.deleteObject(KindAppRole, c.Name)
	var doomed []string
	eachObject(tx.objs(), KindSecretID, func(k string, v *SecretID) bool {
		if v.AppRole == c.Name {
			doomed = append(doomed, k)
		}
		return true
	})
	for _, k := range doomed {
		tx.deleteObject(KindSecretID, k)
	}
	return &Result{}
}

func applyCreateSecretID(tx *txn, c *CreateSecretID) *Result {
	s := c.SecretID
	if s.Hash == "" {
		return fail(fmt.Errorf("%w: secret id needs a hash", ErrInvalid))
	}
	if _, ok := getObject[AppRole](tx.objs(), KindAppRole, s.AppRole); !ok {
		return fail(ErrNotFound)
	}
	tx.putObject(KindSecretID, s.Hash, &s)
	return &Result{}
}

func applyAppRoleLogin(tx *txn, c *AppRoleLogin) *Result {
	sid, ok := getObject[SecretID](tx.objs(), KindSecretID, c.SecretIDHash)
	if !ok {
		return fail(fmt.Errorf("%w: unknown secret id", ErrDenied))
	}
	role, ok := getObject[AppRole](tx.objs(), KindAppRole, sid.AppRole)
	if !ok || role.RoleID != c.RoleID {
		return fail(fmt.Errorf("%w: secret id does not belong to this role", ErrDenied))
	}
	if sid.ExpiresAt != 0 && c.At >= sid.ExpiresAt {
		return fail(fmt.Errorf("%w: secret id expired", ErrDenied))
	}
	if sid.Limited && sid.UsesLeft <= 0 {
		return fail(fmt.Errorf("%w: secret id used up", ErrDenied))
	}
	if len(role.CIDRs) > 0 {
		ip, err := netip.ParseAddr(c.RemoteIP)
		allowed := false
		for _, cidr := range role.CIDRs {
			if p, perr := netip.ParsePrefix(cidr); err == nil && perr == nil && p.Contains(ip.Unmap()) {
				allowed = true
			}
		}
		if !allowed {
			return fail(fmt.Errorf("%w: client address not allowed", ErrDenied))
		}
	}
	next := *sid
	if next.Limited {
		next.UsesLeft--
	}
	if next.Limited && next.UsesLeft <= 0 {
		tx.deleteObject(KindSecretID, next.Hash)
	} else {
		tx.putObject(KindSecretID, next.Hash, &next)
	}
	t := c.Token
	t.PrincipalType, t.PrincipalID, t.Method = PrincipalService, role.Principal, "approle"
	t.IssuedAt = c.At
	if role.TokenTTL > 0 {
		t.TTL = role.TokenTTL
	}
	t.ExpiresAt = c.At + t.TTL
	if role.TokenMaxTTL > 0 {
		t.MaxExpiresAt = c.At + role.TokenMaxTTL
	} else if t.MaxExpiresAt == 0 {
		t.MaxExpiresAt = t.ExpiresAt
	}
	if t.Hash == "" {
		return fail(fmt.Errorf("%w: login needs a token hash", ErrInvalid))
	}
	tx.putObject(KindToken, t.Hash, &t)
	return &Result{Token: &t}
}

func applyPutJWTIssuer(tx *txn, c *PutJWTIssuer) *Result {
	if c.Issuer.Name == "" || len(c.Issuer.Config) == 0 {
		return fail(fmt.Errorf("%w: issuer needs a name and config", ErrInvalid))
	}
	i := c.Issuer
	tx.putObject(KindJWTIssuer, i.Name, &i)
	return &Result{}
}

func applyDeleteJWTIssuer(tx *txn, c *DeleteJWTIssuer) *Result {
	if _, ok := getObject[JWTIssuer](tx.objs(), KindJWTIssuer, c.Name); !ok {
		return fail(ErrNotFound)
	}
	tx.deleteObject(KindJWTIssuer, c.Name)
	return &Result{}
}

// Initialized reports whether `operator init` has run.
func (s *State) Initialized() bool {
	m, ok := getObject[ClusterMeta](s.objects, KindMeta, "cluster")
	return ok && m.Initialized
}

// Principal returns a principal.
func (s *State) Principal(t PrincipalType, id string) (*Principal, bool) {
	return getObject[Principal](s.objects, KindPrincipal, PrincipalKey(t, id))
}

// Principals calls fn for every principal in key order until fn returns false.
func (s *State) Principals(fn func(*Principal) bool) {
	eachObject(s.objects, KindPrincipal, func(_ string, p *Principal) bool { return fn(p) })
}

// Token returns a token by the hash of its text.
func (s *State) Token(hash string) (*Token, bool) {
	return getObject[Token](s.objects, KindToken, hash)
}

// AppRole returns an AppRole by name.
func (s *State) AppRole(name string) (*AppRole, bool) {
	return getObject[AppRole](s.objects, KindAppRole, name)
}

// AppRoles calls fn for every AppRole until fn returns false.
func (s *State) AppRoles(fn func(*AppRole) bool) {
	eachObject(s.objects, KindAppRole, func(_ string, a *AppRole) bool { return fn(a) })
}

// JWTIssuers calls fn for every JWT issuer until fn returns false.
func (s *State) JWTIssuers(fn func(*JWTIssuer) bool) {
	eachObject(s.objects, KindJWTIssuer, func(_ string, i *JWTIssuer) bool { return fn(i) })
}

// AuditCommitted is the highest NodeSeq committed for a node.
func (s *State) AuditCommitted(nodeID string) uint64 {
	if m, ok := getObject[AuditMark](s.objects, KindAuditMark, nodeID); ok {
		return m.Seq
	}
	return 0
}

// AuditBatches calls fn for every committed audit batch from seq `from`, in order, until fn
// returns false.
func (s *State) AuditBatches(from uint64, fn func(*AuditBatch) bool) {
	s.objects.AscendGreaterOrEqual(&object{Kind: KindAuditBatch, Key: batchKey(from)}, func(o *object) bool {
		b, ok := o.Value.(*AuditBatch)
		return o.Kind == KindAuditBatch && ok && fn(b)
	})
}

func batchKey(seq uint64) string { return fmt.Sprintf("%020d", seq) }
