package store

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/keyward/keyward/fsm"
)

// adminCommand proposes an administration command after checking admin rights, and audits it.
func (s *Service) adminCommand(ctx context.Context, action string, t fsm.CommandType, payload any) (*fsm.Result, error) {
	if _, err := s.requireAdmin(ctx); err != nil {
		return nil, s.audited(ctx, record{action: action}, err)
	}
	res, err := s.propose(ctx, fsm.MustEncode(t, payload))
	if err == nil && res.Err != nil {
		err = fsmError(res.Err, nil)
	}
	if err := s.audited(ctx, record{action: action}, err); err != nil {
		return nil, err
	}
	return res, nil
}

// PrincipalInput creates or updates a principal. Password (users only) is hashed here, on the
// node that received it; only the hash is proposed.
type PrincipalInput struct {
	Type     fsm.PrincipalType
	ID       string
	Password string
	Roles    []string
	Admin    bool
}

// PutPrincipal creates or replaces a principal (admin).
func (s *Service) PutPrincipal(ctx context.Context, in PrincipalInput) error {
	p := fsm.Principal{Type: in.Type, ID: in.ID, Roles: in.Roles, Admin: in.Admin, CreatedAt: s.d.Now().UnixNano()}
	if c, ok := CallerFrom(ctx); ok {
		p.CreatedBy = string(c.Type) + "/" + c.ID
	}
	if in.Password != "" {
		if in.Type != fsm.PrincipalUser {
			return fmt.Errorf("%w: only users have passwords", ErrInvalidArgument)
		}
		p.PasswordHash = HashPassword(in.Password)
	} else {
		st, _, err := s.readState(ctx, ReadOptions{})
		if err != nil {
			return err
		}
		if old, ok := st.Principal(in.Type, in.ID); ok {
			p.PasswordHash = old.PasswordHash
		}
	}
	_, err := s.adminCommand(ctx, "PUT_PRINCIPAL", fsm.CmdPutPrincipal, fsm.PutPrincipal{Principal: p})
	return err
}

// DeletePrincipal removes a principal (admin).
func (s *Service) DeletePrincipal(ctx context.Context, t fsm.PrincipalType, id string) error {
	_, err := s.adminCommand(ctx, "DELETE_PRINCIPAL", fsm.CmdDeletePrincipal, fsm.DeletePrincipal{Type: t, ID: id})
	return err
}

// PrincipalView is a principal without its password hash.
type PrincipalView struct {
	Type  fsm.PrincipalType `json:"type"`
	ID    string            `json:"id"`
	Roles []string          `json:"roles,omitempty"`
	Admin bool              `json:"admin,omitempty"`
}

// Principals lists principals (admin).
func (s *Service) Principals(ctx context.Context) ([]PrincipalView, error) {
	if _, err := s.requireAdmin(ctx); err != nil {
		return nil, err
	}
	st, _, err := s.readState(ctx, ReadOptions{})
	if err != nil {
		return nil, err
	}
	var out []PrincipalView
	st.Principals(func(p *fsm.Principal) bool {
		out = append(out, PrincipalView{Type: p.Type, ID: p.ID, Roles: p.Roles, Admin: p.Admin})
		return true
	})
	return out, nil
}

// AddToRole / RemoveFromRole change a principal's role membership (admin).
func (s *Service) SetRoleMember(ctx context.Context, role string, t fsm.PrincipalType, id string, member bool) error {
	st, _, err := s.readState(ctx, ReadOptions{})
	if err != nil {
		return err
	}
	if _, ok := st.Principal(fsm.PrincipalRole, role); !ok {
		return fmt.Errorf("role %q: %w", role, ErrNotFound)
	}
	p, ok := st.Principal(t, id)
	next := fsm.Principal{Type: t, ID: id, CreatedAt: s.d.Now().UnixNano()}
	if ok {
		next = *p
	}
	next.Roles = slices.DeleteFunc(slices.Clone(next.Roles), func(r string) bool { return r == role })
	if member {
		next.Roles = append(next.Roles, role)
	}
	_, err = s.adminCommand(ctx, "ROLE_MEMBERSHIP", fsm.CmdPutPrincipal, fsm.PutPrincipal{Principal: next})
	return err
}

// GrantInput is a grant of actions on one secret (by path, resolved to its id) or a pattern.
type GrantInput struct {
	PrincipalType fsm.PrincipalType
	PrincipalID   string
	Actions       []fsm.Action
	SecretPath    string // grant on this one secret (must exist)
	PathPattern   string // or on a pattern
	ExpiresAt     time.Time
}

// Grant stores a grant (admin) and returns its id.
func (s *Service) Grant(ctx context.Context, in GrantInput) (string, error) {
	p := fsm.Policy{ID: s.d.NewID(), PrincipalType: in.PrincipalType, PrincipalID: in.PrincipalID,
		Actions: in.Actions, CreatedAt: s.d.Now().UnixNano()}
	if !in.ExpiresAt.IsZero() {
		p.ExpiresAt = in.ExpiresAt.UnixNano()
	}
	switch {
	case in.SecretPath != "" && in.PathPattern != "":
		return "", fmt.Errorf("%w: grant on a secret or a pattern, not both", ErrInvalidArgument)
	case in.SecretPath != "":
		st, _, err := s.readState(ctx, ReadOptions{})
		if err != nil {
			return "", err
		}
		sec, ok := st.SecretByPath(in.SecretPath)
		if !ok {
			return "", fmt.Errorf("secret %q: %w", in.SecretPath, ErrNotFound)
		}
		p.SecretID = sec.ID
	case in.PathPattern != "":
		if err := ValidatePattern(in.PathPattern); err != nil {
			return "", fmt.Errorf("%w: pattern: %v", ErrInvalidArgument, err)
		}
		p.PathPattern = in.PathPattern
	default:
		return "", fmt.Errorf("%w: a grant needs a secret or a path pattern", ErrInvalidArgument)
	}
	if c, ok := CallerFrom(ctx); ok {
		p.CreatedBy = string(c.Type) + "/" + c.ID
	}
	_, err := s.adminCommand(ctx, "GRANT", fsm.CmdPutPolicy, fsm.PutPolicy{Policy: p})
	return p.ID, err
}

// Revoke a grant by id (admin).
func (s *Service) RevokeGrant(ctx context.Context, id string) error {
	_, err := s.adminCommand(ctx, "REVOKE_GRANT", fsm.CmdDeletePolicy, fsm.DeletePolicy{ID: id})
	return err
}

// Grants lists grants (admin), optionally for one principal.
func (s *Service) Grants(ctx context.Context, t fsm.PrincipalType, id string) ([]fsm.Policy, error) {
	if _, err := s.requireAdmin(ctx); err != nil {
		return nil, err
	}
	st, _, err := s.readState(ctx, ReadOptions{})
	if err != nil {
		return nil, err
	}
	var out []fsm.Policy
	st.Policies(func(p *fsm.Policy) bool {
		if (t == "" || p.PrincipalType == t) && (id == "" || p.PrincipalID == id) {
			out = append(out, *p)
		}
		return true
	})
	return out, nil
}

// AppRoleInput configures an AppRole.
type AppRoleInput struct {
	Name         string
	Principal    string
	SecretIDTTL  time.Duration
	SecretIDUses int
	CIDRs        []string
	TokenTTL     time.Duration
	TokenMaxTTL  time.Duration
}

// PutAppRole creates or updates an AppRole (admin) and returns its role id.
func (s *Service) PutAppRole(ctx context.Context, in AppRoleInput) (string, error) {
	roleID := s.d.NewID()
	st, _, err := s.readState(ctx, ReadOptions{})
	if err != nil {
		return "", err
	}
	if old, ok := st.AppRole(in.Name); ok {
		roleID = old.RoleID
	}
	a := fsm.AppRole{Name: in.Name, RoleID: roleID, Principal: in.Principal, SecretIDTTL: int64(in.SecretIDTTL),
		SecretIDUses: in.SecretIDUses, CIDRs: in.CIDRs, TokenTTL: int64(in.TokenTTL), TokenMaxTTL: int64(in.TokenMaxTTL)}
	_, err = s.adminCommand(ctx, "PUT_APPROLE", fsm.CmdPutAppRole, fsm.PutAppRole{AppRole: a})
	return roleID, err
}

// DeleteAppRole removes an AppRole and its secret ids (admin).
func (s *Service) DeleteAppRole(ctx context.Context, name string) error {
	_, err := s.adminCommand(ctx, "DELETE_APPROLE", fsm.CmdDeleteAppRole, fsm.DeleteAppRole{Name: name})
	return err
}

// AppRoles lists AppRoles (admin).
func (s *Service) AppRoles(ctx context.Context) ([]fsm.AppRole, error) {
	if _, err := s.requireAdmin(ctx); err != nil {
		return nil, err
	}
	st, _, err := s.readState(ctx, ReadOptions{})
	if err != nil {
		return nil, err
	}
	var out []fsm.AppRole
	st.AppRoles(func(a *fsm.AppRole) bool { out = append(out, *a); return true })
	return out, nil
}

// MintSecretID creates a secret id for an AppRole (admin); the text is shown once.
func (s *Service) MintSecretID(ctx context.Context, name string) (string, time.Time, error) {
	st, _, err := s.readState(ctx, ReadOptions{})
	if err != nil {
		return "", time.Time{}, err
	}
	a, ok := st.AppRole(name)
	if !ok {
		return "", time.Time{}, fmt.Errorf("approle %q: %w", name, ErrNotFound)
	}
	text := newSecret("sid_")
	now := s.d.Now()
	sid := fsm.SecretID{Hash: TokenHash(text), AppRole: name, CreatedAt: now.UnixNano()}
	var exp time.Time
	if a.SecretIDTTL > 0 {
		exp = now.Add(time.Duration(a.SecretIDTTL))
		sid.ExpiresAt = exp.UnixNano()
	}
	if a.SecretIDUses > 0 {
		sid.Limited, sid.UsesLeft = true, a.SecretIDUses
	}
	if _, err := s.adminCommand(ctx, "MINT_SECRET_ID", fsm.CmdCreateSecretID, fsm.CreateSecretID{SecretID: sid}); err != nil {
		return "", time.Time{}, err
	}
	return text, exp, nil
}
