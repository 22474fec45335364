package fsm

import (
	"fmt"
	"path"
	"slices"
)

func applyPutVersion(tx *txn, c *PutVersion) *Result {
	if c.SecretID == "" || c.Path == "" || c.VersionID == "" || len(c.Ciphertext) == 0 || len(c.WrappedKey) == 0 {
		return fail(fmt.Errorf("%w: put version needs secret id, path, version id, ciphertext and wrapped key", ErrInvalid))
	}
	if c.MaxVersions == 1 {
		return fail(fmt.Errorf("%w: max_versions must be 0 or at least 2", ErrInvalid))
	}
	sec, exists := tx.secretByPath(c.Path)
	var current, latest uint64
	if exists {
		current, latest = sec.CurrentVersion, sec.LatestVersion
	}
	if c.CAS != nil && *c.CAS != current {
		return fail(&ConflictError{UserCAS: true, Current: current, Latest: latest})
	}
	if c.Expect != latest || (exists && sec.ID != c.SecretID) {
		return fail(&ConflictError{Current: current, Latest: latest})
	}
	if exists && sec.Deleted() {
		return fail(ErrDeleted)
	}
	if !exists {
		if _, taken := tx.secretByID(c.SecretID); taken {
			return fail(fmt.Errorf("%w: secret id %s is in use", ErrInvalid, c.SecretID))
		}
	}

	var next Secret
	if exists {
		next = *sec
	} else {
		next = Secret{
			ID: c.SecretID, Path: c.Path, Name: path.Base(c.Path),
			CreatedBy: c.By, CreatedAt: c.At, MaxVersions: DefaultMaxVersions,
		}
	}
	if c.Description != nil {
		next.Description = *c.Description
	}
	if c.MaxVersions != 0 {
		next.MaxVersions = c.MaxVersions
	}
	n := latest + 1
	// SecretID shares the secret's own string; repeated short strings are interned: with
	// 100,000s of versions in memory, per-version copies add up.
	v := &SecretVersion{
		ID: c.VersionID, SecretID: next.ID, Number: n,
		Ciphertext: c.Ciphertext, WrappedKey: c.WrappedKey,
		KMSKeyID: tx.intern(c.KMSKeyID), KMSProvider: tx.intern(c.KMSProvider),
		State: StateCurrent, CreatedBy: tx.intern(c.By), CreatedAt: c.At,
	}
	// Demote: old CURRENT -> PREVIOUS, old PREVIOUS -> DEPRECATED. Exactly one CURRENT and at
	// most one PREVIOUS hold after every write.
	tx.setVersionState(next.ID, next.PreviousVersion, StateDeprecated)
	tx.setVersionState(next.ID, next.CurrentVersion, StatePrevious)
	next.PreviousVersion = next.CurrentVersion
	next.CurrentVersion = n
	next.LatestVersion = n
	next.UpdatedAt = c.At
	tx.putVersion(v)
	prune(tx, &next)
	tx.putSecret(&next)
	return &Result{Secret: &next, Version: v}
}

// prune applies retention: versions older than the newest MaxVersions lose their key and
// ciphertext once DEPRECATED. PrunedThrough remembers how far it got, so each write does O(1)
// work. Versions outside the window are always DEPRECATED because CURRENT and PREVIOUS are the
// two newest and MaxVersions >= 2.
func prune(tx *txn, s *Secret) {
	if s.LatestVersion <= uint64(s.MaxVersions) {
		return
	}
	limit := s.LatestVersion - uint64(s.MaxVersions)
	for n := s.PrunedThrough + 1; n <= limit; n++ {
		if v, ok := tx.version(s.ID, n); ok && v.State == StateDeprecated {
			tx.shred(s.ID, n)
		}
	}
	if limit > s.PrunedThrough {
		s.PrunedThrough = limit
	}
}

func applyDestroyVersions(tx *txn, c *DestroyVersions) *Result {
	sec, ok := tx.secretByID(c.SecretID)
	if !ok {
		return fail(ErrNotFound)
	}
	if sec.Deleted() {
		return fail(ErrDeleted)
	}
	if len(c.Versions) == 0 {
		return fail(fmt.Errorf("%w: no versions to destroy", ErrInvalid))
	}
	// Check every version before changing any: the command is all or nothing.
	for _, n := range c.Versions {
		if _, ok := tx.version(sec.ID, n); !ok {
			return fail(fmt.Errorf("version %d: %w", n, ErrNotFound))
		}
		if n == sec.CurrentVersion {
			return fail(ErrVersionIsCurrent)
		}
	}
	destroyed := slices.Clone(c.Versions)
	slices.Sort(destroyed)
	destroyed = slices.Compact(destroyed)
	for _, n := range destroyed {
		tx.shred(sec.ID, n)
	}
	next := *sec
	next.UpdatedAt = c.At
	tx.putSecret(&next)
	return &Result{Secret: &next, Destroyed: destroyed}
}

func applyDeleteSecret(tx *txn, c *DeleteSecret) *Result {
	sec, ok := tx.secretByID(c.SecretID)
	if !ok {
		return fail(ErrNotFound)
	}
	if sec.Deleted() {
		return &Result{Secret: sec} // idempotent
	}
	next := *sec
	next.DeletedAt = c.At
	next.UpdatedAt = c.At
	tx.putSecret(&next)
	return &Result{Secret: &next}
}

func applyRestoreSecret(tx *txn, c *RestoreSecret) *Result {
	sec, ok := tx.secretByID(c.SecretID)
	if !ok {
		return fail(ErrNotFound)
	}
	if !sec.Deleted() {
		return fail(ErrNotDeleted)
	}
	next := *sec
	next.DeletedAt = 0
	next.UpdatedAt = c.At
	tx.putSecret(&next)
	return &Result{Secret: &next}
}

func applyPurgeSecret(tx *txn, c *PurgeSecret) *Result {
	sec, ok := tx.secretByID(c.SecretID)
	if !ok {
		return fail(ErrNotFound)
	}
	tx.deleteSecret(sec)
	return &Result{Secret: sec}
}

func applyPutPolicy(tx *txn, c *PutPolicy) *Result {
	p := c.Policy
	if p.ID == "" || p.PrincipalID == "" || len(p.Actions) == 0 || (p.SecretID == "") == (p.PathPattern == "") {
		return fail(fmt.Errorf("%w: policy needs an id, a principal, actions, and one of secret id or path pattern", ErrInvalid))
	}
	switch p.PrincipalType {
	case PrincipalService, PrincipalUser, PrincipalRole:
	default:
		return fail(fmt.Errorf("%w: unknown principal type %q", ErrInvalid, p.PrincipalType))
	}
	for _, a := range p.Actions {
		switch a {
		case ActionRead, ActionWrite, ActionDelete, ActionRotate:
		default:
			return fail(fmt.Errorf("%w: unknown action %q", ErrInvalid, a))
		}
	}
	tx.putPolicy(&p)
	return &Result{}
}

func applyDeletePolicy(tx *txn, c *DeletePolicy) *Result {
	if _, ok := tx.base.Policy(c.ID); !ok {
		return fail(ErrNotFound)
	}
	tx.deletePolicy(c.ID)
	return &Result{}
}
