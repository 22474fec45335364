package fsm

import (
	"encoding/json"
	"fmt"

	"github.com/google/btree"
)

// Identity, auth configuration and audit bookkeeping live in one ordered tree of typed
// objects, keyed by (kind, key). Each kind has one Go type; snapshots carry the kind so the
// value decodes back to it.
type object struct {
	Kind  string
	Key   string
	Value any // a pointer to the kind's type; never changed once stored
}

func objectLess(a, b *object) bool {
	if a.Kind != b.Kind {
		return a.Kind < b.Kind
	}
	return a.Key < b.Key
}

// Object kinds.
const (
	KindPrincipal  = "principal"   // *Principal, key "TYPE/ID"
	KindToken      = "token"       // *Token, key Token.Hash
	KindAppRole    = "approle"     // *AppRole, key AppRole.Name
	KindSecretID   = "secret_id"   // *SecretID, key SecretID.Hash
	KindJWTIssuer  = "jwt_issuer"  // *JWTIssuer, key JWTIssuer.Name
	KindMeta       = "meta"        // *ClusterMeta, key "cluster"
	KindAuditMark  = "audit_mark"  // *AuditMark, key node id
	KindAuditBatch = "audit_batch" // *AuditBatch, key zero-padded batch seq
)

var objectTypes = map[string]func() any{
	KindPrincipal:  func() any { return new(Principal) },
	KindToken:      func() any { return new(Token) },
	KindAppRole:    func() any { return new(AppRole) },
	KindSecretID:   func() any { return new(SecretID) },
	KindJWTIssuer:  func() any { return new(JWTIssuer) },
	KindMeta:       func() any { return new(ClusterMeta) },
	KindAuditMark:  func() any { return new(AuditMark) },
	KindAuditBatch: func() any { return new(AuditBatch) },
}

type snapObject struct {
	Kind  string          `json:"kind"`
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
}

func decodeObject(so *snapObject) (*object, error) {
	mk, ok := objectTypes[so.Kind]
	if !ok {
		return nil, fmt.Errorf("unknown object kind %q", so.Kind)
	}
	v := mk()
	if err := json.Unmarshal(so.Value, v); err != nil {
		return nil, fmt.Errorf("object %s/%s: %w", so.Kind, so.Key, err)
	}
	return &object{Kind: so.Kind, Key: so.Key, Value: v}, nil
}

// getObject returns the value stored under (kind, key) as T.
func getObject[T any](t *btree.BTreeG[*object], kind, key string) (*T, bool) {
	o, ok := t.Get(&object{Kind: kind, Key: key})
	if !ok {
		return nil, false
	}
	v, ok := o.Value.(*T)
	return v, ok
}

// eachObject visits every object of a kind in key order until fn returns false.
func eachObject[T any](t *btree.BTreeG[*object], kind string, fn func(key string, v *T) bool) {
	t.AscendGreaterOrEqual(&object{Kind: kind}, func(o *object) bool {
		if o.Kind != kind {
			return false
		}
		v, ok := o.Value.(*T)
		return !ok || fn(o.Key, v)
	})
}

func (t *txn) objectTree() *btree.BTreeG[*object] {
	if t.objects == nil {
		t.objects = t.base.objects.Clone()
	}
	return t.objects
}

func (t *txn) objs() *btree.BTreeG[*object] {
	if t.objects != nil {
		return t.objects
	}
	return t.base.objects
}

func (t *txn) putObject(kind, key string, v any) {
	t.objectTree().ReplaceOrInsert(&object{Kind: kind, Key: key, Value: v})
}

func (t *txn) deleteObject(kind, key string) {
	t.objectTree().Delete(&object{Kind: kind, Key: key})
}
