package fsm

import (
	"math"
	"strings"

	"github.com/google/btree"
)

// State is an immutable view of the replicated state at one applied index. Readers may hold
// and use a State for as long as they like: Apply never changes one, it builds the next from
// copy-on-write clones of its B-trees (google/btree: Clone is O(1), and a write copies only the
// nodes on its path).
type State struct {
	index    uint64
	byID     *btree.BTreeG[*Secret]        // ordered by Secret.ID
	byPath   *btree.BTreeG[*Secret]        // ordered by Secret.Path, for prefix listing
	versions *btree.BTreeG[*SecretVersion] // ordered by (SecretID, Number)
	policies *btree.BTreeG[*Policy]        // ordered by Policy.ID
	audit    *btree.BTreeG[*auditBlock]    // committed audit batches, ordered by first Seq
	objects  *btree.BTreeG[*object]        // identity, auth config, audit bookkeeping (objects.go)
	auditSeq uint64                        // last assigned audit sequence number
	unzip    *unzipper                     // decompresses audit blocks; shared by the states derived from one
}

// degree of every B-tree: nodes hold up to 2*degree-1 items.
const degree = 32

func secretIDLess(a, b *Secret) bool   { return a.ID < b.ID }
func secretPathLess(a, b *Secret) bool { return a.Path < b.Path }
func versionLess(a, b *SecretVersion) bool {
	if a.SecretID != b.SecretID {
		return a.SecretID < b.SecretID
	}
	return a.Number < b.Number
}
func policyLess(a, b *Policy) bool { return a.ID < b.ID }

func emptyState() *State {
	return &State{
		byID:     btree.NewG(degree, secretIDLess),
		byPath:   btree.NewG(degree, secretPathLess),
		versions: btree.NewG(degree, versionLess),
		policies: btree.NewG(degree, policyLess),
		audit:    btree.NewG(degree, auditBlockLess),
		objects:  btree.NewG(degree, objectLess),
		unzip:    &unzipper{},
	}
}

// Index is the Raft index of the last command applied to this state.
func (s *State) Index() uint64 { return s.index }

// SecretByPath returns the secret at path, including a soft-deleted one.
func (s *State) SecretByPath(path string) (*Secret, bool) {
	return s.byPath.Get(&Secret{Path: path})
}

// SecretByID returns the secret with that id, including a soft-deleted one.
func (s *State) SecretByID(id string) (*Secret, bool) {
	return s.byID.Get(&Secret{ID: id})
}

// Version returns one version of a secret.
func (s *State) Version(secretID string, number uint64) (*SecretVersion, bool) {
	return s.versions.Get(&SecretVersion{SecretID: secretID, Number: number})
}

// Versions returns every version of a secret, newest first.
func (s *State) Versions(secretID string) []*SecretVersion {
	var out []*SecretVersion
	descendVersions(s.versions, secretID, func(v *SecretVersion) bool {
		out = append(out, v)
		return true
	})
	return out
}

// descendVersions visits a secret's versions newest first until fn returns false.
func descendVersions(t *btree.BTreeG[*SecretVersion], secretID string, fn func(*SecretVersion) bool) {
	t.DescendLessOrEqual(&SecretVersion{SecretID: secretID, Number: math.MaxUint64}, func(v *SecretVersion) bool {
		return v.SecretID == secretID && fn(v)
	})
}

// NewestInState returns the newest version of a secret in the given state that still has its
// value (not destroyed), if any.
func (s *State) NewestInState(secretID string, st VersionState) (*SecretVersion, bool) {
	var found *SecretVersion
	descendVersions(s.versions, secretID, func(v *SecretVersion) bool {
		if v.State == st && !v.Destroyed {
			found = v
			return false
		}
		return true
	})
	return found, found != nil
}

// List returns up to limit live (not soft-deleted) secrets whose path starts with prefix and
// sorts after the path `after`, in path order. more is true when further secrets match.
func (s *State) List(prefix, after string, limit int) (out []*Secret, more bool) {
	start := prefix
	if after >= start {
		start = after + "\x00"
	}
	s.byPath.AscendGreaterOrEqual(&Secret{Path: start}, func(sec *Secret) bool {
		if !strings.HasPrefix(sec.Path, prefix) {
			return false
		}
		if sec.Deleted() {
			return true
		}
		if len(out) == limit {
			more = true
			return false
		}
		out = append(out, sec)
		return true
	})
	return out, more
}

// SecretCount is the number of secrets, soft-deleted ones included.
func (s *State) SecretCount() int { return s.byID.Len() }

// Policy returns a policy by id.
func (s *State) Policy(id string) (*Policy, bool) { return s.policies.Get(&Policy{ID: id}) }

// Policies calls fn for every policy in id order until fn returns false.
func (s *State) Policies(fn func(*Policy) bool) { s.policies.Ascend(fn) }

// AuditSeq is the sequence number of the last committed audit record.
func (s *State) AuditSeq() uint64 { return s.auditSeq }
