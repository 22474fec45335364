package store

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/keyward/keyward/fsm"
)

// Default token lifetimes: users get an hour, services a quarter of an hour; renewals extend
// a token by its TTL up to its maximum.
const (
	DefaultUserTTL       = time.Hour
	DefaultUserMaxTTL    = 24 * time.Hour
	DefaultServiceTTL    = 15 * time.Minute
	DefaultServiceMaxTTL = 4 * time.Hour
)

// Login is what a successful login returns. Token is shown once; only its hash is stored.
type Login struct {
	Token     string
	Accessor  string
	Principal string // TYPE/ID
	ExpiresAt time.Time
}

// Init initializes the cluster once: the first admin (USER adminID, with an optional
// password) and its token, which never expires until revoked. rootToken, when non-empty, is
// the token to create (dev mode); otherwise one is generated.
func (s *Service) Init(ctx context.Context, adminID, password, rootToken string) (*Login, error) {
	if s.d.State.State().Initialized() {
		return nil, ErrAlreadyInitialized
	}
	if adminID == "" {
		adminID = "admin"
	}
	admin := fsm.Principal{Type: fsm.PrincipalUser, ID: adminID, Admin: true, CreatedAt: s.d.Now().UnixNano(), CreatedBy: "init"}
	if password != "" {
		admin.PasswordHash = HashPassword(password)
	}
	if rootToken == "" {
		rootToken = newSecret("kw_")
	}
	tok := fsm.Token{Hash: TokenHash(rootToken), Accessor: s.d.NewID(), Method: "root", IssuedAt: s.d.Now().UnixNano()}
	res, err := s.propose(ctx, fsm.MustEncode(fsm.CmdInit, fsm.Init{Admin: admin, Token: tok, At: s.d.Now().UnixNano()}))
	if err != nil {
		return nil, err
	}
	if res.Err != nil {
		if errors.Is(res.Err, fsm.ErrAlreadyInitialized) {
			return nil, ErrAlreadyInitialized
		}
		return nil, fsmError(res.Err, nil)
	}
	return &Login{Token: rootToken, Accessor: tok.Accessor, Principal: "USER/" + adminID}, nil
}

// Initialized reports whether the cluster has been initialized (local state).
func (s *Service) Initialized() bool { return s.d.State.State().Initialized() }

// LoginUserpass checks a user's password (argon2id) and issues a token.
func (s *Service) LoginUserpass(ctx context.Context, user, password string) (*Login, error) {
	c, _ := CallerFrom(ctx)
	c.Type, c.ID, c.Method = fsm.PrincipalUser, user, "userpass"
	ctx = WithCaller(ctx, c)
	rec := record{action: "LOGIN"}
	st, _, err := s.readState(ctx, ReadOptions{})
	if err != nil {
		return nil, s.audited(ctx, rec, err)
	}
	p, ok := st.Principal(fsm.PrincipalUser, user)
	if !ok || p.PasswordHash == "" || !CheckPassword(p.PasswordHash, password) {
		return nil, s.audited(ctx, rec, fmt.Errorf("%w: wrong user name or password", ErrLoginFailed))
	}
	l, err := s.issue(ctx, fsm.PrincipalUser, user, "userpass", DefaultUserTTL, DefaultUserMaxTTL)
	if err := s.audited(ctx, rec, err); err != nil {
		return nil, err
	}
	return l, nil
}

// LoginService issues a token to a SERVICE principal that the caller proved by other means
// (a verified JWT).
func (s *Service) loginService(ctx context.Context, id, method string, ttl, maxTTL time.Duration) (*Login, error) {
	c, _ := CallerFrom(ctx)
	c.Type, c.ID, c.Method = fsm.PrincipalService, id, method
	ctx = WithCaller(ctx, c)
	l, err := s.issue(ctx, fsm.PrincipalService, id, method, ttlOr(ttl, DefaultServiceTTL), ttlOr(maxTTL, DefaultServiceMaxTTL))
	if err := s.audited(ctx, record{action: "LOGIN"}, err); err != nil {
		return nil, err
	}
	return l, nil
}

func (s *Service) issue(ctx context.Context, t fsm.PrincipalType, id, method string, ttl, maxTTL time.Duration) (*Login, error) {
	text := newSecret("kw_")
	now := s.d.Now()
	tok := fsm.Token{Hash: TokenHash(text), Accessor: s.d.NewID(), PrincipalType: t, PrincipalID: id, Method: method,
		TTL: int64(ttl), IssuedAt: now.UnixNano(), ExpiresAt: now.Add(ttl).UnixNano(), MaxExpiresAt: now.Add(maxTTL).UnixNano()}
	res, err := s.propose(ctx, fsm.MustEncode(fsm.CmdCreateToken, fsm.CreateToken{Token: tok}))
	if err != nil {
		return nil, err
	}
	if res.Err != nil {
		return nil, fsmError(res.Err, nil)
	}
	return &Login{Token: text, Accessor: tok.Accessor, Principal: string(t) + "/" + id, ExpiresAt: time.Unix(0, tok.ExpiresAt).UTC()}, nil
}

// LoginAppRole consumes one use of a secret id (checked cluster-wide in the FSM: role,
// expiry, uses, client address) and issues a SERVICE token.
func (s *Service) LoginAppRole(ctx context.Context, roleID, secretID string) (*Login, error) {
	c, _ := CallerFrom(ctx)
	c.Method = "approle"
	ctx = WithCaller(ctx, c)
	text := newSecret("kw_")
	now := s.d.Now()
	tok := fsm.Token{Hash: TokenHash(text), Accessor: s.d.NewID(), TTL: int64(DefaultServiceTTL),
		MaxExpiresAt: now.Add(DefaultServiceMaxTTL).UnixNano()}
	res, err := s.propose(ctx, fsm.MustEncode(fsm.CmdAppRoleLogin, fsm.AppRoleLogin{
		RoleID: roleID, SecretIDHash: TokenHash(secretID), RemoteIP: c.RemoteIP, At: now.UnixNano(), Token: tok,
	}))
	if err == nil && res.Err != nil {
		err = fmt.Errorf("%w: %v", ErrLoginFailed, res.Err)
	}
	if err != nil {
		return nil, s.audited(ctx, record{action: "LOGIN"}, err)
	}
	t := res.Token
	c.Type, c.ID = t.PrincipalType, t.PrincipalID
	if err := s.audited(WithCaller(ctx, c), record{action: "LOGIN"}, nil); err != nil {
		return nil, err
	}
	return &Login{Token: text, Accessor: t.Accessor, Principal: string(t.PrincipalType) + "/" + t.PrincipalID,
		ExpiresAt: time.Unix(0, t.ExpiresAt).UTC()}, nil
}

// Renew extends the caller's own token.
func (s *Service) Renew(ctx context.Context) (*Login, error) {
	c, ok := CallerFrom(ctx)
	if !ok || c.TokenHash == "" {
		return nil, ErrUnauthenticated
	}
	res, err := s.propose(ctx, fsm.MustEncode(fsm.CmdRenewToken, fsm.RenewToken{Hash: c.TokenHash, At: s.d.Now().UnixNano()}))
	if err != nil {
		return nil, err
	}
	if res.Err != nil {
		return nil, fmt.Errorf("%w: token cannot be renewed", ErrUnauthenticated)
	}
	return &Login{Accessor: res.Token.Accessor, Principal: string(c.Type) + "/" + c.ID, ExpiresAt: time.Unix(0, res.Token.ExpiresAt).UTC()}, nil
}

// Revoke revokes a token: the caller's own (token == "" and accessor == ""), one given by
// text, or (admins) one by accessor. It takes effect on every node once committed.
func (s *Service) Revoke(ctx context.Context, token, accessor string) error {
	c, ok := CallerFrom(ctx)
	if !ok {
		return ErrUnauthenticated
	}
	cmd := fsm.RevokeToken{Hash: c.TokenHash}
	switch {
	case token != "":
		cmd.Hash = TokenHash(token)
	case accessor != "":
		if !c.Admin {
			return fmt.Errorf("%w: revoking by accessor needs admin rights", ErrForbidden)
		}
		cmd = fsm.RevokeToken{Accessor: accessor}
	case c.TokenHash == "":
		return fmt.Errorf("%w: no token to revoke", ErrInvalidArgument)
	}
	res, err := s.propose(ctx, fsm.MustEncode(fsm.CmdRevokeToken, cmd))
	if err != nil {
		return err
	}
	if res.Err != nil {
		return fsmError(res.Err, nil)
	}
	return s.audited(ctx, record{action: "REVOKE_TOKEN"}, nil)
}

// HashPassword returns an argon2id PHC string for password (RFC 9106 second recommended
// parameters scaled down for servers: 19 MiB, 2 passes, 1 lane).
func HashPassword(password string) string {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		panic(err)
	}
	const m, t, p = 19 * 1024, 2, 1
	key := argon2.IDKey([]byte(password), salt, t, m, p, 32)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, m, t, p,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

// CheckPassword verifies password against an argon2id PHC string in constant time.
func CheckPassword(phc, password string) bool {
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}
