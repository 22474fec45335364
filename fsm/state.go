package fsm

import (
	"encoding/binary"
	"strings"

	iradix "github.com/hashicorp/go-immutable-radix/v2"
)

// State is an immutable view of the replicated state at one applied index. Readers may hold
// and use a State for as long as they like: Apply never changes one, it builds the next.
type State struct {
	index    uint64
	byID     *iradix.Tree[*Secret]        // secret id -> secret
	byPath   *iradix.Tree[*Secret]        // path -> secret (ordered, for prefix listing)
	versions *iradix.Tree[*SecretVersion] // versionKey(secret id, number) -> version
	policies *iradix.Tree[*Policy]        // policy id -> policy
	audit    *iradix.Tree[*AuditRecord]   // seqKey(seq) -> record
	auditSeq uint64                       // last assigned audit sequence number
}

func emptyState() *State {
	return &State{
		byID:     iradix.New[*Secret](),
		byPath:   iradix.New[*Secret](),
		versions: iradix.New[*SecretVersion](),
		policies: iradix.New[*Policy](),
		audit:    iradix.New[*AuditRecord](),
	}
}

// Index is the Raft index of the last command applied to this state.
func (s *State) Index() uint64 { return s.index }

// SecretByPath returns the secret at path, including a soft-deleted one.
func (s *State) SecretByPath(path string) (*Secret, bool) {
	return s.byPath.Get([]byte(path))
}

// SecretByID returns the secret with that id, including a soft-deleted one.
func (s *State) SecretByID(id string) (*Secret, bool) {
	return s.byID.Get([]byte(id))
}

// Version returns one version of a secret.
func (s *State) Version(secretID string, number uint64) (*SecretVersion, bool) {
	return s.versions.Get(versionKey(secretID, number))
}

// Versions returns every version of a secret, newest first.
func (s *State) Versions(secretID string) []*SecretVersion {
	var out []*SecretVersion
	prefix := versionPrefix(secretID)
	it := s.versions.Root().ReverseIterator()
	it.SeekPrefix(prefix)
	for _, v, ok := it.Previous(); ok; _, v, ok = it.Previous() {
		out = append(out, v)
	}
	return out
}

// NewestInState returns the newest version of a secret in the given state that still has its
// value (not destroyed), if any.
func (s *State) NewestInState(secretID string, st VersionState) (*SecretVersion, bool) {
	it := s.versions.Root().ReverseIterator()
	it.SeekPrefix(versionPrefix(secretID))
	for _, v, ok := it.Previous(); ok; _, v, ok = it.Previous() {
		if v.State == st && !v.Destroyed {
			return v, true
		}
	}
	return nil, false
}

// List returns up to limit live (not soft-deleted) secrets whose path starts with prefix and
// sorts after the path `after`, in path order. more is true when further secrets match.
func (s *State) List(prefix, after string, limit int) (out []*Secret, more bool) {
	it := s.byPath.Root().Iterator()
	start := prefix
	if after >= start {
		start = after + "\x00"
	}
	it.SeekLowerBound([]byte(start))
	for k, sec, ok := it.Next(); ok; k, sec, ok = it.Next() {
		if !strings.HasPrefix(string(k), prefix) {
			break
		}
		if sec.Deleted() {
			continue
		}
		if len(out) == limit {
			return out, true
		}
		out = append(out, sec)
	}
	return out, false
}

// SecretCount is the number of secrets, soft-deleted ones included.
func (s *State) SecretCount() int { return s.byID.Len() }

// Policy returns a policy by id.
func (s *State) Policy(id string) (*Policy, bool) { return s.policies.Get([]byte(id)) }

// Policies calls fn for every policy in id order until fn returns false.
func (s *State) Policies(fn func(*Policy) bool) {
	it := s.policies.Root().Iterator()
	for _, p, ok := it.Next(); ok && fn(p); _, p, ok = it.Next() {
	}
}

// AuditSeq is the sequence number of the last committed audit record.
func (s *State) AuditSeq() uint64 { return s.auditSeq }

// Audit calls fn for every audit record with sequence number >= from, in order, until fn
// returns false.
func (s *State) Audit(from uint64, fn func(*AuditRecord) bool) {
	it := s.audit.Root().Iterator()
	it.SeekLowerBound(seqKey(from))
	for _, r, ok := it.Next(); ok && fn(r); _, r, ok = it.Next() {
	}
}

func versionPrefix(secretID string) []byte {
	b := make([]byte, 0, len(secretID)+1)
	b = append(b, secretID...)
	return append(b, 0)
}

func versionKey(secretID string, number uint64) []byte {
	return binary.BigEndian.AppendUint64(versionPrefix(secretID), number)
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// walk visits every value of a tree in key order until fn returns false.
func walk[T any](t *iradix.Tree[T], fn func(T) bool) {
	it := t.Root().Iterator()
	for _, v, ok := it.Next(); ok && fn(v); _, v, ok = it.Next() {
	}
}
