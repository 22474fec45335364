// Package fsm is the deterministic state machine that every keyward node applies in Raft log
// order: secrets, their versions, access policies and the audit log.
package fsm

import (
	"fmt"
	"strings"
)

// VersionState is the lifecycle state of a secret version.
type VersionState uint8

// Version states. Exactly one version of a live secret is CURRENT and at most one is PREVIOUS.
// PENDING is reserved for rotation: a version written but not yet promoted, never served as
// CURRENT.
const (
	StateUnknown VersionState = iota
	StateCurrent
	StatePrevious
	StateDeprecated
	StatePending
)

var stateNames = [...]string{"UNKNOWN", "CURRENT", "PREVIOUS", "DEPRECATED", "PENDING"}

func (s VersionState) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("STATE(%d)", uint8(s))
}

// ParseState parses a state name, case-insensitively.
func ParseState(s string) (VersionState, error) {
	for i, n := range stateNames {
		if i > 0 && strings.EqualFold(s, n) {
			return VersionState(i), nil
		}
	}
	return StateUnknown, fmt.Errorf("unknown version state %q", s)
}

// DefaultMaxVersions is how many of the newest versions keep their values when a secret does
// not say otherwise.
const DefaultMaxVersions = 10

// Secret is the seed's Secret row plus the bookkeeping of its versions. Values are immutable
// once stored in a State: Apply copies a Secret before changing it.
type Secret struct {
	ID               string `json:"id"`
	Path             string `json:"path"`
	Name             string `json:"name"`
	Description      string `json:"description,omitempty"`
	CreatedBy        string `json:"created_by,omitempty"`
	CreatedAt        int64  `json:"created_at"` // Unix nanoseconds, chosen by the proposer
	UpdatedAt        int64  `json:"updated_at"`
	RotationPolicyID string `json:"rotation_policy_id,omitempty"`

	// LatestVersion is the highest version number ever assigned; the next write gets
	// LatestVersion+1, so numbers are unique and gapless.
	LatestVersion   uint64 `json:"latest_version"`
	CurrentVersion  uint64 `json:"current_version"`
	PreviousVersion uint64 `json:"previous_version,omitempty"`
	MaxVersions     uint32 `json:"max_versions"`
	// PrunedThrough: every version numbered at or below it has been considered by retention.
	PrunedThrough uint64 `json:"pruned_through,omitempty"`
	// DeletedAt is set (Unix nanoseconds) while the secret is soft-deleted.
	DeletedAt int64 `json:"deleted_at,omitempty"`
}

// Deleted reports whether the secret is soft-deleted.
func (s *Secret) Deleted() bool { return s.DeletedAt != 0 }

// SecretVersion is the seed's SecretVersion row. Ciphertext and WrappedKey are nil once the
// version is destroyed or dropped by retention; its metadata stays.
type SecretVersion struct {
	ID          string       `json:"id"`
	SecretID    string       `json:"secret_id"`
	Number      uint64       `json:"number"`
	Ciphertext  []byte       `json:"ciphertext,omitempty"`
	WrappedKey  []byte       `json:"wrapped_key,omitempty"`
	KMSKeyID    string       `json:"kms_key_id,omitempty"`
	KMSProvider string       `json:"kms_provider,omitempty"`
	State       VersionState `json:"state"`
	CreatedBy   string       `json:"created_by,omitempty"`
	CreatedAt   int64        `json:"created_at"`
	ExpiresAt   int64        `json:"expires_at,omitempty"`
	Destroyed   bool         `json:"destroyed,omitempty"`
}

// PrincipalType is the kind of principal a policy grants to.
type PrincipalType string

// Principal types of the seed's SecretPolicy.
const (
	PrincipalService PrincipalType = "SERVICE"
	PrincipalUser    PrincipalType = "USER"
	PrincipalRole    PrincipalType = "ROLE"
)

// Action is an operation a policy grants.
type Action string

// Actions of the seed's SecretPolicy.
const (
	ActionRead   Action = "READ"
	ActionWrite  Action = "WRITE"
	ActionDelete Action = "DELETE"
	ActionRotate Action = "ROTATE"
)

// Policy is the seed's SecretPolicy: a grant of actions on one secret (SecretID) or on a path
// pattern (PathPattern) to one principal.
type Policy struct {
	ID            string        `json:"id"`
	SecretID      string        `json:"secret_id,omitempty"`
	PathPattern   string        `json:"path_pattern,omitempty"`
	PrincipalType PrincipalType `json:"principal_type"`
	PrincipalID   string        `json:"principal_id"`
	Actions       []Action      `json:"actions"`
	ExpiresAt     int64         `json:"expires_at,omitempty"`
	CreatedAt     int64         `json:"created_at"`
	CreatedBy     string        `json:"created_by,omitempty"`
}

// AuditRecord is the seed's SecretAudit row plus who served it and why a denial happened. It
// never holds a value or a token.
type AuditRecord struct {
	ID            string `json:"id"`
	Seq           uint64 `json:"seq,omitempty"`   // cluster-wide order, assigned by Apply
	Batch         uint64 `json:"batch,omitempty"` // the committed batch (hash-chain link) it belongs to
	NodeID        string `json:"node_id,omitempty"`
	SecretID      string `json:"secret_id,omitempty"`
	Path          string `json:"path,omitempty"`
	VersionID     string `json:"version_id,omitempty"`
	PrincipalType string `json:"principal_type,omitempty"`
	PrincipalID   string `json:"principal_id"`
	AuthMethod    string `json:"auth_method,omitempty"`
	Action        string `json:"action"`
	IPAddress     string `json:"ip_address,omitempty"`
	Success       bool   `json:"success"`
	Reason        string `json:"reason,omitempty"`
	RequestID     string `json:"request_id,omitempty"`
	AccessedAt    int64  `json:"accessed_at"`
	// NodeSeq is the order on the serving node; Apply drops repeats. It stays the last field:
	// the serving node appends it to a record it encoded without it (see CanonicalAudit).
	NodeSeq uint64 `json:"node_seq,omitempty"`
}

// AuditBatch is one committed batch of audit records, a link of the hash chain:
// Hash = SHA-256(Prev || LF || each record's canonical JSON and LF), see ChainHash.
type AuditBatch struct {
	Seq   uint64 `json:"seq"`
	First uint64 `json:"first"` // first and last record Seq in the batch
	Last  uint64 `json:"last"`
	Prev  string `json:"prev"` // hex
	Hash  string `json:"hash"` // hex
}
