// Package wire holds the JSON shapes of keyward's HTTP API v1, shared by the server in api and
// the Go client in api/client. docs/API.md describes them.
package wire

import "time"

// Header names set on responses.
const (
	HeaderIndex       = "X-Keyward-Index"
	HeaderLastContact = "X-Keyward-Last-Contact" // milliseconds; 0 on the leader, -1 never
	HeaderStaleness   = "X-Keyward-Staleness"    // milliseconds the state read may be old; -1 unknown
	HeaderKnownLeader = "X-Keyward-Known-Leader" // true or false
	HeaderConsistency = "X-Keyward-Consistency"  // linearizable or stale
	HeaderToken       = "X-Keyward-Token"
	HeaderRedirect    = "X-Keyward-Redirect" // "true": a follower answers writes with 307 to the leader
)

// Limits of the API.
const (
	MaxValueBytes = 64 << 10
	MaxBodyBytes  = 1 << 20
	MaxPathBytes  = 512
	MaxDescBytes  = 1024
	DefaultLimit  = 100
	MaxLimit      = 1000
)

// PutRequest is the body of PUT /v1/secrets/{path}. Exactly one of Value and ValueBase64 is set.
type PutRequest struct {
	Value       *string `json:"value,omitempty"`
	ValueBase64 *string `json:"value_base64,omitempty"`
	CAS         *uint64 `json:"cas,omitempty"`
	Description *string `json:"description,omitempty"`
}

// WriteResponse answers a write.
type WriteResponse struct {
	Path      string    `json:"path"`
	SecretID  string    `json:"secret_id"`
	Version   uint64    `json:"version"`
	VersionID string    `json:"version_id"`
	State     string    `json:"state"`
	CreatedAt time.Time `json:"created_at"`
	// Index is the Raft index of the write: pass it as min_index to read your own write.
	Index uint64 `json:"index"`
}

// SecretResponse answers a read. Value is set when the bytes are valid UTF-8, ValueBase64
// otherwise.
type SecretResponse struct {
	Path        string    `json:"path"`
	SecretID    string    `json:"secret_id"`
	Version     uint64    `json:"version"`
	VersionID   string    `json:"version_id"`
	State       string    `json:"state"`
	CreatedAt   time.Time `json:"created_at"`
	Value       *string   `json:"value,omitempty"`
	ValueBase64 *string   `json:"value_base64,omitempty"`
}

// VersionInfo is the metadata of one version.
type VersionInfo struct {
	Version   uint64    `json:"version"`
	VersionID string    `json:"version_id"`
	State     string    `json:"state"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by,omitempty"`
	KMSKeyID  string    `json:"kms_key_id,omitempty"`
	Destroyed bool      `json:"destroyed"`
}

// VersionsResponse answers GET /v1/versions/{path}; Versions are newest first.
type VersionsResponse struct {
	Path           string        `json:"path"`
	SecretID       string        `json:"secret_id"`
	Description    string        `json:"description,omitempty"`
	CreatedAt      time.Time     `json:"created_at"`
	CreatedBy      string        `json:"created_by,omitempty"`
	CurrentVersion uint64        `json:"current_version"`
	Versions       []VersionInfo `json:"versions"`
}

// SecretMeta is one entry of a listing.
type SecretMeta struct {
	Path           string    `json:"path"`
	SecretID       string    `json:"secret_id"`
	Description    string    `json:"description,omitempty"`
	CurrentVersion uint64    `json:"current_version"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// ListResponse answers GET /v1/secrets?prefix=; Next is the "after" cursor of the next page.
type ListResponse struct {
	Secrets []SecretMeta `json:"secrets"`
	Next    string       `json:"next,omitempty"`
}

// DestroyRequest is the body of POST /v1/destroy/{path}.
type DestroyRequest struct {
	Versions []uint64 `json:"versions"`
}

// DestroyResponse answers a destroy.
type DestroyResponse struct {
	Path      string   `json:"path"`
	Destroyed []uint64 `json:"destroyed"`
}

// DeleteResponse answers DELETE /v1/secrets/{path}.
type DeleteResponse struct {
	Path    string `json:"path"`
	Deleted bool   `json:"deleted"`
	Purged  bool   `json:"purged"`
}

// RestoreResponse answers POST /v1/restore/{path}.
type RestoreResponse struct {
	Path     string `json:"path"`
	Restored bool   `json:"restored"`
}

// HealthResponse answers GET /v1/sys/health.
type HealthResponse struct {
	NodeID        string `json:"node_id"`
	State         string `json:"state"`
	Leader        string `json:"leader"`
	AppliedIndex  uint64 `json:"applied_index"`
	CommitIndex   uint64 `json:"commit_index"`
	LastContactMS int64  `json:"last_contact_ms"`
	Error         *Error `json:"error,omitempty"`
}

// ErrorResponse is the body of every error answer.
type ErrorResponse struct {
	Error Error `json:"error"`
}

// Error is a stable code, a human message and, for cas_mismatch, the actual current version.
type Error struct {
	Code           string  `json:"code"`
	Message        string  `json:"message"`
	CurrentVersion *uint64 `json:"current_version,omitempty"`
}
