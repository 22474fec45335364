package rotation

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/keyward/keyward/fsm"
	"github.com/keyward/keyward/store"
)

// Secrets is the part of the secret service the rotation API calls; store.Service implements
// it. It authorizes (action ROTATE) and audits every call.
type Secrets interface {
	SetRotationPolicy(ctx context.Context, in store.RotationPolicyInput) (*fsm.RotationPolicy, error)
	DeleteRotationPolicy(ctx context.Context, path string) error
	RotationStatus(ctx context.Context, path string, ro store.ReadOptions) (*store.RotationStatus, error)
	RotateNow(ctx context.Context, path string) (uint64, error)
	WaitRotation(ctx context.Context, path string, seq uint64) (*fsm.Rotation, error)
}

// PolicyInput defines a secret's rotation.
type PolicyInput struct {
	Schedule string
	Grace    time.Duration
	Rotator  string
	Settings json.RawMessage
}

// Service is the rotation API of one node: it checks policies against the rotators it knows
// and passes them to the secret service.
type Service struct {
	secrets  Secrets
	rotators map[string]Factory
	now      func() time.Time
}

// NewService returns the rotation API over secrets with the given rotators.
func NewService(secrets Secrets, rotators map[string]Factory, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{secrets: secrets, rotators: rotators, now: now}
}

// MaxGrace bounds a policy's grace period.
const MaxGrace = 30 * 24 * time.Hour

// Validate checks a policy and returns the secret paths its settings reference.
func (s *Service) Validate(in PolicyInput) (Schedule, []string, error) {
	sched, err := ParseSchedule(in.Schedule)
	if err != nil {
		return nil, nil, invalid(err)
	}
	if in.Grace < 0 || in.Grace > MaxGrace {
		return nil, nil, fmt.Errorf("%w: grace must be between 0 and %s", store.ErrInvalidArgument, MaxGrace)
	}
	f, ok := s.rotators[in.Rotator]
	if !ok {
		return nil, nil, fmt.Errorf("%w: unknown rotator %q", store.ErrInvalidArgument, in.Rotator)
	}
	_, refs, err := f(in.Settings)
	if err != nil {
		return nil, nil, invalid(err)
	}
	return sched, refs, nil
}

func invalid(err error) error { return fmt.Errorf("%w: %w", store.ErrInvalidArgument, err) }

// SetPolicy creates or replaces the rotation policy of the secret at path; the first
// scheduled rotation is one schedule step from now.
func (s *Service) SetPolicy(ctx context.Context, path string, in PolicyInput) (*fsm.RotationPolicy, error) {
	sched, refs, err := s.Validate(in)
	if err != nil {
		return nil, err
	}
	return s.secrets.SetRotationPolicy(ctx, store.RotationPolicyInput{Path: path, Schedule: in.Schedule,
		Grace: in.Grace, Rotator: in.Rotator, Settings: in.Settings, Refs: refs, NextAt: sched.Next(s.now())})
}

// DeletePolicy stops rotating the secret at path.
func (s *Service) DeletePolicy(ctx context.Context, path string) error {
	return s.secrets.DeleteRotationPolicy(ctx, path)
}

// Status returns the policy and kept rotations of the secret at path.
func (s *Service) Status(ctx context.Context, path string, ro store.ReadOptions) (*store.RotationStatus, error) {
	return s.secrets.RotationStatus(ctx, path, ro)
}

// Now asks for a rotation of the secret at path and, with wait > 0, waits up to that long for
// it to end. It returns the rotation's sequence number and, if it started, its record.
func (s *Service) Now(ctx context.Context, path string, wait time.Duration) (uint64, *fsm.Rotation, error) {
	seq, err := s.secrets.RotateNow(ctx, path)
	if err != nil || wait <= 0 {
		return seq, nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	r, err := s.secrets.WaitRotation(wctx, path, seq)
	return seq, r, err
}
