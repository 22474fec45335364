// Package rotation runs the seed's zero-downtime rotation protocol on the Raft leader:
//
//	generate a new value → store it as a PENDING version → apply it to the target → test it
//	against the target → promote it (new CURRENT, old CURRENT → PREVIOUS) → tell the target
//	(finish) → wait the grace period → revoke the old credential at the target and mark the
//	old version DEPRECATED.
//
// Each step is recorded in the FSM (fsm/rotation.go) before the next one starts, and each FSM
// command names the step it continues, so the runner is a loop over recorded state: a new
// leader resumes exactly where the old one stopped and a repeated command changes nothing.
// Rotators (package rotation/rotators) do the target-specific work behind the Rotator
// interface declared here.
package rotation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Job is what a rotator is told about the rotation it works on.
type Job struct {
	Path       string
	SecretID   string
	RotationID string
	Seq        uint64
	Settings   json.RawMessage
	// Current is the value that was CURRENT when the rotation started (nil if none); set for
	// Generate only.
	Current []byte
	// Refs reads the secrets the settings reference (target credentials, HMAC keys).
	Refs Resolver
}

// Resolver reads the CURRENT value of another secret by path.
type Resolver interface {
	Value(ctx context.Context, path string) ([]byte, error)
}

// Rotator does the target-specific steps of the protocol. Every method may be called again
// for the same rotation (after a failover or a retry) and must then have the same effect.
// Errors must never contain a secret value.
type Rotator interface {
	// Generate returns the new value.
	Generate(ctx context.Context, j *Job) ([]byte, error)
	// Apply sets the new value at the target, without invalidating the current one.
	Apply(ctx context.Context, j *Job, value []byte) error
	// Test checks that the new value works at the target.
	Test(ctx context.Context, j *Job, value []byte) error
	// Finish tells the target the new value was promoted.
	Finish(ctx context.Context, j *Job, value []byte) error
	// Revoke invalidates the old value at the target once the grace period is over. old is nil
	// when it can no longer be read (destroyed); current is the promoted value.
	Revoke(ctx context.Context, j *Job, old, current []byte) error
	// Discard undoes Apply for a rotation that failed before promotion (best effort).
	Discard(ctx context.Context, j *Job, pending []byte) error
}

// Factory checks a rotator's settings and returns the rotator and the paths of the secrets
// its settings reference.
type Factory func(settings json.RawMessage) (Rotator, []string, error)

// ErrInvalidPolicy: a schedule or rotator settings are not acceptable.
var ErrInvalidPolicy = errors.New("invalid rotation policy")

// Schedule says when rotations are due.
type Schedule interface {
	// Next is the first due time after t.
	Next(t time.Time) time.Time
}

// MinInterval is the shortest interval schedule.
const MinInterval = time.Second

type interval time.Duration

func (d interval) Next(t time.Time) time.Time { return t.Add(time.Duration(d)) }

type cronSchedule struct{ s cron.Schedule }

func (c cronSchedule) Next(t time.Time) time.Time { return c.s.Next(t.UTC()) }

var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)

// ParseSchedule parses an interval (a Go duration such as "24h" or "90m", at least
// MinInterval) or a 5-field cron expression evaluated in UTC ("minute hour day-of-month month
// day-of-week", e.g. "0 3 * * 1").
func ParseSchedule(s string) (Schedule, error) {
	s = strings.TrimSpace(s)
	if d, err := time.ParseDuration(s); err == nil {
		if d < MinInterval {
			return nil, fmt.Errorf("%w: interval %s is shorter than %s", ErrInvalidPolicy, d, MinInterval)
		}
		return interval(d), nil
	}
	if len(strings.Fields(s)) != 5 {
		return nil, fmt.Errorf("%w: schedule %q is neither a duration (24h) nor a 5-field cron expression", ErrInvalidPolicy, s)
	}
	cs, err := cronParser.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%w: cron expression %q: %v", ErrInvalidPolicy, s, err)
	}
	return cronSchedule{cs}, nil
}
