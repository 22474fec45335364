package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/keyward/keyward/fsm"
)

// Errors of authentication and authorization.
var (
	// ErrUnauthenticated: no credentials, or credentials that identify no one (401).
	ErrUnauthenticated = errors.New("authentication required")
	// ErrForbidden: the caller is known but lacks a grant for this (403).
	ErrForbidden = errors.New("permission denied")
	// ErrNotInitialized: the cluster has not been initialized (`keyward operator init`).
	ErrNotInitialized = errors.New("cluster not initialized")
	// ErrAlreadyInitialized: init ran before.
	ErrAlreadyInitialized = errors.New("cluster already initialized")
	// ErrAuditUnavailable: the audit record could not be made durable; the request fails closed.
	ErrAuditUnavailable = errors.New("audit log unavailable")
	// ErrLoginFailed: credentials were wrong, expired or used up.
	ErrLoginFailed = errors.New("login failed")
)

// Caller is who makes a request, as the API layer established it.
type Caller struct {
	Type      fsm.PrincipalType
	ID        string
	Method    string   // token, mtls
	Roles     []string // role names the principal belongs to
	Admin     bool
	RemoteIP  string
	RequestID string
	// TokenHash is set when the caller authenticated with a token.
	TokenHash string
}

type callerKey struct{}

// WithCaller returns ctx carrying the caller.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the caller in ctx.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// TokenHash is the stored form of a token's text.
func TokenHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// newSecret returns a random 32-byte secret as URL-safe base64 with a prefix naming its kind.
func newSecret(prefix string) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// Authenticate resolves a token to its caller from local state: no Raft round trip. A token
// revoked on any node is refused here as soon as this node applied the revocation.
func (s *Service) Authenticate(ctx context.Context, token string) (Caller, error) {
	st := s.d.State.State()
	hash := TokenHash(token)
	t, ok := st.Token(hash)
	if !ok && s.d.Reads != nil {
		// A token issued through another node may not be applied here yet: catch up with the
		// leader once (a linearizable read index), then look again.
		if st2, _, err := s.readState(ctx, ReadOptions{}); err == nil {
			st = st2
			t, ok = st.Token(hash)
		}
	}
	now := s.d.Now().UnixNano()
	if !ok || t.Revoked || (t.ExpiresAt != 0 && now >= t.ExpiresAt) {
		return Caller{}, fmt.Errorf("%w: invalid or expired token", ErrUnauthenticated)
	}
	c := Caller{Type: t.PrincipalType, ID: t.PrincipalID, Method: "token", TokenHash: t.Hash}
	if p, ok := st.Principal(t.PrincipalType, t.PrincipalID); ok {
		c.Roles, c.Admin = p.Roles, p.Admin
	} else if t.PrincipalType == fsm.PrincipalUser {
		return Caller{}, fmt.Errorf("%w: the token's user no longer exists", ErrUnauthenticated)
	}
	c.Admin = c.Admin || rolesAdmin(st, c.Roles)
	return c, nil
}

// CertCaller builds the caller for a verified client certificate naming a SERVICE principal.
func (s *Service) CertCaller(id string) Caller {
	st := s.d.State.State()
	c := Caller{Type: fsm.PrincipalService, ID: id, Method: "mtls"}
	if p, ok := st.Principal(fsm.PrincipalService, id); ok {
		c.Roles, c.Admin = p.Roles, p.Admin
	}
	c.Admin = c.Admin || rolesAdmin(st, c.Roles)
	return c
}

func rolesAdmin(st *fsm.State, roles []string) bool {
	for _, r := range roles {
		if p, ok := st.Principal(fsm.PrincipalRole, r); ok && p.Admin {
			return true
		}
	}
	return false
}

// requireAdmin fails unless the caller has administration rights.
func (s *Service) requireAdmin(ctx context.Context) (Caller, error) {
	c, ok := CallerFrom(ctx)
	if !ok {
		return c, ErrUnauthenticated
	}
	if !c.Admin {
		return c, fmt.Errorf("%w: administration needs admin rights", ErrForbidden)
	}
	return c, nil
}

func ttlOr(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
