package fsm

import (
	"fmt"

	"github.com/google/btree"
)

// txn builds the next State from the current one. Trees are cloned (O(1), copy-on-write) on
// their first write, so a command touching only versions copies nothing else.
type txn struct {
	base     *State
	byID     *btree.BTreeG[*Secret]
	byPath   *btree.BTreeG[*Secret]
	versions *btree.BTreeG[*SecretVersion]
	policies *btree.BTreeG[*Policy]
	audit    *btree.BTreeG[*auditBlock]
	objects  *btree.BTreeG[*object]
	auditSeq uint64
	interned *interner // may be nil
	unzip    *unzipper // Apply's own decompressor; nil: the base state's
}

// unzipper returns the decompressor Apply uses.
func (t *txn) unzipper() *unzipper {
	if t.unzip != nil {
		return t.unzip
	}
	return t.base.unzip
}

func newTxn(base *State) *txn { return &txn{base: base, auditSeq: base.auditSeq} }

// intern returns a shared copy of a short, often repeated string (key ids, provider names,
// principals). It only saves memory; the state is the same with or without it.
func (t *txn) intern(s string) string {
	if t.interned == nil {
		return s
	}
	return t.interned.get(s)
}

// interner keeps one copy of each short string it has seen, up to a bound. Only the FSM's
// single writer uses it.
type interner struct {
	m map[string]string
}

func (in *interner) get(s string) string {
	if v, ok := in.m[s]; ok {
		return v
	}
	if len(s) <= 128 && len(in.m) < 4096 {
		in.m[s] = s
	}
	return s
}

func (t *txn) secrets() {
	if t.byID == nil {
		t.byID, t.byPath = t.base.byID.Clone(), t.base.byPath.Clone()
	}
}

func (t *txn) versionTree() *btree.BTreeG[*SecretVersion] {
	if t.versions == nil {
		t.versions = t.base.versions.Clone()
	}
	return t.versions
}

func (t *txn) secretByID(id string) (*Secret, bool) {
	if t.byID != nil {
		return t.byID.Get(&Secret{ID: id})
	}
	return t.base.SecretByID(id)
}

func (t *txn) secretByPath(path string) (*Secret, bool) {
	if t.byPath != nil {
		return t.byPath.Get(&Secret{Path: path})
	}
	return t.base.SecretByPath(path)
}

func (t *txn) version(secretID string, n uint64) (*SecretVersion, bool) {
	probe := &SecretVersion{SecretID: secretID, Number: n}
	if t.versions != nil {
		return t.versions.Get(probe)
	}
	return t.base.versions.Get(probe)
}

// putSecret stores s under both indexes. Callers pass a fresh copy, never a stored pointer
// they changed in place.
func (t *txn) putSecret(s *Secret) {
	t.secrets()
	t.byID.ReplaceOrInsert(s)
	t.byPath.ReplaceOrInsert(s)
}

func (t *txn) deleteSecret(s *Secret) {
	t.secrets()
	t.byID.Delete(s)
	t.byPath.Delete(s)
	vt := t.versionTree()
	var doomed []*SecretVersion
	descendVersions(vt, s.ID, func(v *SecretVersion) bool {
		doomed = append(doomed, v)
		return true
	})
	for _, v := range doomed {
		vt.Delete(v)
	}
}

func (t *txn) putVersion(v *SecretVersion) { t.versionTree().ReplaceOrInsert(v) }

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

func (t *txn) policyTree() *btree.BTreeG[*Policy] {
	if t.policies == nil {
		t.policies = t.base.policies.Clone()
	}
	return t.policies
}

func (t *txn) putPolicy(p *Policy)    { t.policyTree().ReplaceOrInsert(p) }
func (t *txn) deletePolicy(id string) { t.policyTree().Delete(&Policy{ID: id}) }

func (t *txn) auditTree() *btree.BTreeG[*auditBlock] {
	if t.audit == nil {
		t.audit = t.base.audit.Clone()
	}
	return t.audit
}

func (t *txn) commit(index uint64) *State {
	s := *t.base
	s.index = index
	if t.byID != nil {
		s.byID, s.byPath = t.byID, t.byPath
	}
	if t.versions != nil {
		s.versions = t.versions
	}
	if t.policies != nil {
		s.policies = t.policies
	}
	if t.audit != nil {
		s.audit = t.audit
	}
	if t.objects != nil {
		s.objects = t.objects
	}
	s.auditSeq = t.auditSeq
	return &s
}

// decodeInto adapts a typed apply function to the handler table, decoding its JSON payload.
// Unknown fields are accepted so a newer leader may add optional fields.
func decodeInto[P any](fn func(*txn, *P) *Result) handler {
	return func(tx *txn, payload []byte) (*Result, error) {
		var p P
		if err := decodePayload(payload, &p); err != nil {
			return nil, fmt.Errorf("decode payload: %w", err)
		}
		return fn(tx, &p), nil
	}
}

func fail(err error) *Result { return &Result{Err: err} }
