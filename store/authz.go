package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/keyward/keyward/fsm"
)

// Authorization follows the seed's SecretPolicy: deny by default; a grant gives actions on one
// secret (by id) or on a path pattern to one principal (SERVICE, USER) or to a ROLE whose
// members inherit it; an expired grant counts for nothing.
//
// Path patterns: an exact path; "prefix/*" for everything below prefix (one or more
// segments; "*" alone for every path); "+" as a segment for exactly one segment
// ("prod/+/db"). Admins may do every action on every secret.

// allowed reports whether the caller may do action on the secret at path (sec may be nil
// when the secret does not exist yet).
func allowed(st *fsm.State, c Caller, action fsm.Action, path string, sec *fsm.Secret, now int64) bool {
	ok := false
	st.Policies(func(p *fsm.Policy) bool {
		if p.ExpiresAt != 0 && now >= p.ExpiresAt {
			return true
		}
		if !grantsTo(p, c) || !hasAction(p.Actions, action) {
			return true
		}
		switch {
		case p.SecretID != "":
			ok = sec != nil && sec.ID == p.SecretID
		default:
			ok = MatchPattern(p.PathPattern, path)
		}
		return !ok
	})
	return ok
}

func grantsTo(p *fsm.Policy, c Caller) bool {
	if p.PrincipalType == c.Type && p.PrincipalID == c.ID {
		return true
	}
	if p.PrincipalType == fsm.PrincipalRole {
		for _, r := range c.Roles {
			if r == p.PrincipalID {
				return true
			}
		}
	}
	return false
}

func hasAction(actions []fsm.Action, a fsm.Action) bool {
	for _, x := range actions {
		if x == a {
			return true
		}
	}
	return false
}

// MatchPattern reports whether path matches a grant's path pattern.
func MatchPattern(pattern, path string) bool {
	if pattern == path {
		return true
	}
	ps, xs := strings.Split(pattern, "/"), strings.Split(path, "/")
	for i, seg := range ps {
		if seg == "*" && i == len(ps)-1 {
			return len(xs) > i
		}
		if i >= len(xs) || (seg != "+" && seg != xs[i]) {
			return false
		}
	}
	return len(ps) == len(xs)
}

// ValidatePattern checks a grant's path pattern: path segments, "+" for one segment, and "*"
// only as the last segment.
func ValidatePattern(p string) error {
	segs := strings.Split(p, "/")
	probe := make([]string, len(segs))
	for i, s := range segs {
		switch {
		case s == "+":
			probe[i] = "x"
		case s == "*" && i == len(segs)-1:
			probe[i] = "x"
		default:
			probe[i] = s
		}
	}
	return ValidatePath(strings.Join(probe, "/"))
}

// authorize checks the caller in ctx may do action on path. It never audits; callers do.
func (s *Service) authorize(ctx context.Context, st *fsm.State, action fsm.Action, path string, sec *fsm.Secret) (Caller, error) {
	c, ok := CallerFrom(ctx)
	if !ok {
		return c, ErrUnauthenticated
	}
	if !st.Initialized() {
		return c, ErrNotInitialized
	}
	if c.Admin || allowed(st, c, action, path, sec, s.d.Now().UnixNano()) {
		return c, nil
	}
	return c, fmt.Errorf("%w: %s %s/%s may not %s %q", ErrForbidden, "principal", c.Type, c.ID, action, path)
}

// canRead reports whether the caller may read path; for filtering lists.
func (s *Service) canRead(st *fsm.State, c Caller, sec *fsm.Secret, now int64) bool {
	return c.Admin || allowed(st, c, fsm.ActionRead, sec.Path, sec, now)
}
