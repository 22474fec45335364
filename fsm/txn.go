package fsm

import (
	"encoding/json"
	"fmt"

	iradix "github.com/hashicorp/go-immutable-radix/v2"
)

// txn builds the next State from the current one. Tree transactions are opened lazily so a
// command touching only versions copies nothing else.
type txn struct {
	base     *State
	byID     *iradix.Txn[*Secret]
	byPath   *iradix.Txn[*Secret]
	versions *iradix.Txn[*SecretVersion]
	policies *iradix.Txn[*Policy]
	audit    *iradix.Txn[*AuditRecord]
	auditSeq uint64
}

func newTxn(base *State) *txn { return &txn{base: base, auditSeq: base.auditSeq} }

func (t *txn) secretByID(id string) (*Secret, bool) {
	if t.byID != nil {
		return t.byID.Get([]byte(id))
	}
	return t.base.byID.Get([]byte(id))
}

func (t *txn) secretByPath(path string) (*Secret, bool) {
	if t.byPath != nil {
		return t.byPath.Get([]byte(path))
	}
	return t.base.byPath.Get([]byte(path))
}

func (t *txn) version(secretID string, n uint64) (*SecretVersion, bool) {
	if t.versions != nil {
		return t.versions.Get(versionKey(secretID, n))
	}
	return t.base.versions.Get(versionKey(secretID, n))
}

// putSecret stores s under both indexes. Callers pass a fresh copy, never a stored pointer
// they changed in place.
func (t *txn) putSecret(s *Secret) {
	if t.byID == nil {
		t.byID = t.base.byID.Txn()
		t.byPath = t.base.byPath.Txn()
	}
	t.byID.Insert([]byte(s.ID), s)
	t.byPath.Insert([]byte(s.Path), s)
}

func (t *txn) deleteSecret(s *Secret) {
	if t.byID == nil {
		t.byID = t.base.byID.Txn()
		t.byPath = t.base.byPath.Txn()
	}
	t.byID.Delete([]byte(s.ID))
	t.byPath.Delete([]byte(s.Path))
	if t.versions == nil {
		t.versions = t.base.versions.Txn()
	}
	t.versions.DeletePrefix(versionPrefix(s.ID))
}

func (t *txn) putVersion(v *SecretVersion) {
	if t.versions == nil {
		t.versions = t.base.versions.Txn()
	}
	t.versions.Insert(versionKey(v.SecretID, v.Number), v)
}

// setVersionState stores a copy of version n with a new state.
func (t *txn) setVersionState(secretID string, n uint64, st VersionState) {
	if n == 0 {
		return
	}
	v, ok := t.version(secretID, n)
	if !ok || v.State == st {
		return
	}
	c := *v
	c.State = st
	t.putVersion(&c)
}

// shred stores a copy of version n without its key and ciphertext.
func (t *txn) shred(secretID string, n uint64) (changed bool) {
	v, ok := t.version(secretID, n)
	if !ok || v.Destroyed {
		return false
	}
	c := *v
	c.Ciphertext, c.WrappedKey, c.Destroyed = nil, nil, true
	t.putVersion(&c)
	return true
}

func (t *txn) putPolicy(p *Policy) {
	if t.policies == nil {
		t.policies = t.base.policies.Txn()
	}
	t.policies.Insert([]byte(p.ID), p)
}

func (t *txn) deletePolicy(id string) {
	if t.policies == nil {
		t.policies = t.base.policies.Txn()
	}
	t.policies.Delete([]byte(id))
}

func (t *txn) appendAudit(r *AuditRecord) {
	if t.audit == nil {
		t.audit = t.base.audit.Txn()
	}
	t.auditSeq++
	r.Seq = t.auditSeq
	t.audit.Insert(seqKey(r.Seq), r)
}

func (t *txn) commit(index uint64) *State {
	s := *t.base
	s.index = index
	if t.byID != nil {
		s.byID = t.byID.CommitOnly()
		s.byPath = t.byPath.CommitOnly()
	}
	if t.versions != nil {
		s.versions = t.versions.CommitOnly()
	}
	if t.policies != nil {
		s.policies = t.policies.CommitOnly()
	}
	if t.audit != nil {
		s.audit = t.audit.CommitOnly()
	}
	s.auditSeq = t.auditSeq
	return &s
}

// decodeInto adapts a typed apply function to the handler table, decoding its JSON payload.
// Unknown fields are accepted so a newer leader may add optional fields.
func decodeInto[P any](fn func(*txn, *P) *Result) handler {
	return func(tx *txn, payload []byte) (*Result, error) {
		var p P
		if err := json.Unmarshal(payload, &p); err != nil {
			return nil, fmt.Errorf("decode payload: %w", err)
		}
		return fn(tx, &p), nil
	}
}

func fail(err error) *Result { return &Result{Err: err} }
