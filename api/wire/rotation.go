package wire

import (
	"encoding/json"
	"time"
)

// RotationPolicyRequest is the body of PUT /v1/rotation/{path}.
type RotationPolicyRequest struct {
	// Schedule is an interval ("24h", at least 1s) or a 5-field cron expression in UTC.
	Schedule string `json:"schedule"`
	// Grace is how long the old value stays valid after the new one is promoted ("60s" when
	// empty).
	Grace    string          `json:"grace,omitempty"`
	Rotator  string          `json:"rotator"` // random, postgres, webhook
	Settings json.RawMessage `json:"settings,omitempty"`
}

// RotationPolicy is a secret's rotation policy and the state of its rotations.
type RotationPolicy struct {
	Path         string          `json:"path"`
	SecretID     string          `json:"secret_id"`
	ID           string          `json:"id"`
	Schedule     string          `json:"schedule"`
	GraceSeconds float64         `json:"grace_seconds"`
	Rotator      string          `json:"rotator"`
	Settings     json.RawMessage `json:"settings,omitempty"`
	NextAt       *time.Time      `json:"next_at,omitempty"`
	// ManualRequested: a `rotation now` request waits for the runner.
	ManualRequested bool       `json:"manual_requested,omitempty"`
	ActiveSeq       uint64     `json:"active_seq,omitempty"`
	LastSeq         uint64     `json:"last_seq,omitempty"`
	LastOutcome     string     `json:"last_outcome,omitempty"`
	LastEndedAt     *time.Time `json:"last_ended_at,omitempty"`
	CreatedAt       time.Time  `json:"created_at"`
	CreatedBy       string     `json:"created_by,omitempty"`
	UpdatedAt       time.Time  `json:"updated_at"`
}

// RotationEvent is one recorded step of a rotation, or a failed attempt at the next one.
type RotationEvent struct {
	Step    string    `json:"step"`
	At      time.Time `json:"at"`
	Attempt int       `json:"attempt,omitempty"`
	Error   string    `json:"error,omitempty"`
}

// Rotation is one run of the rotation protocol.
type Rotation struct {
	ID         string          `json:"id"`
	Seq        uint64          `json:"seq"`
	Trigger    string          `json:"trigger"`
	By         string          `json:"by,omitempty"`
	Step       string          `json:"step"`
	OldVersion uint64          `json:"old_version,omitempty"`
	NewVersion uint64          `json:"new_version,omitempty"`
	Attempt    int             `json:"attempt,omitempty"`
	RetryAt    *time.Time      `json:"retry_at,omitempty"`
	StartedAt  time.Time       `json:"started_at"`
	PromotedAt *time.Time      `json:"promoted_at,omitempty"`
	GraceUntil *time.Time      `json:"grace_until,omitempty"`
	EndedAt    *time.Time      `json:"ended_at,omitempty"`
	Outcome    string          `json:"outcome,omitempty"`
	Error      string          `json:"error,omitempty"`
	Events     []RotationEvent `json:"events,omitempty"`
}

// RotationResponse answers GET and PUT /v1/rotation/{path}: the policy and the newest
// rotation.
type RotationResponse struct {
	Policy RotationPolicy `json:"policy"`
	Latest *Rotation      `json:"latest,omitempty"`
}

// RotationHistoryResponse answers GET /v1/rotation-history/{path}: kept rotations, newest
// first.
type RotationHistoryResponse struct {
	Path      string     `json:"path"`
	Rotations []Rotation `json:"rotations"`
}

// RotateNowResponse answers POST /v1/rotate/{path}. Seq is the rotation's number; with
// ?wait, Rotation is its record when it ended or the wait ran out (Done tells which).
type RotateNowResponse struct {
	Path     string    `json:"path"`
	Seq      uint64    `json:"seq"`
	Done     bool      `json:"done"`
	Rotation *Rotation `json:"rotation,omitempty"`
}
