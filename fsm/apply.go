package fsm

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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

func applyAppendAudit(tx *txn, c *AppendAudit) *Result {
	// Drop records already committed: a node re-ships what it cannot prove was committed.
	var fresh []AuditRecord
	marks := map[string]uint64{}
	for _, r := range c.Records {
		hwm, seen := marks[r.NodeID]
		if !seen {
			hwm = 0
			if m, ok := getObject[AuditMark](tx.objs(), KindAuditMark, r.NodeID); ok {
				hwm = m.Seq
			}
		}
		if r.NodeID != "" && r.NodeSeq != 0 && r.NodeSeq <= hwm {
			marks[r.NodeID] = hwm
			continue
		}
		marks[r.NodeID] = max(hwm, r.NodeSeq)
		fresh = append(fresh, r)
	}
	if len(fresh) == 0 {
		return &Result{AuditSeq: tx.auditSeq}
	}
	var prev AuditBatch
	tx.objs().DescendLessOrEqual(&object{Kind: KindAuditBatch, Key: batchKey(^uint64(0))}, func(o *object) bool {
		if b, ok := o.Value.(*AuditBatch); ok && o.Kind == KindAuditBatch {
			prev = *b
		}
		return false
	})
	batch := &AuditBatch{Seq: prev.Seq + 1, Prev: prev.Hash}
	for i := range fresh {
		fresh[i].Batch = batch.Seq
		tx.appendAudit(&fresh[i])
	}
	batch.First, batch.Last = fresh[0].Seq, fresh[len(fresh)-1].Seq
	batch.Hash = ChainHash(batch.Prev, fresh)
	tx.putObject(KindAuditBatch, batchKey(batch.Seq), batch)
	for node, seq := range marks {
		if node != "" && seq != 0 {
			tx.putObject(KindAuditMark, node, &AuditMark{NodeID: node, Seq: seq})
		}
	}
	return &Result{AuditSeq: tx.auditSeq}
}

// ChainHash links a batch of audit records to the previous batch: hex SHA-256 of the previous
// hash followed by each record's JSON (encoding/json of AuditRecord, fields in declaration
// order), each terminated by a newline. `keyward audit verify` recomputes it.
func ChainHash(prev string, recs []AuditRecord) string {
	h := sha256.New()
	h.Write([]byte(prev))
	h.Write([]byte{'\n'})
	for i := range recs {
		b, _ := json.Marshal(&recs[i]) // a struct of strings, ints and bools always marshals
		h.Write(b)
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}
