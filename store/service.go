// Package store is the secret service: it validates, encrypts, proposes and reads secrets.
// It sits between the HTTP API and the replicated state.
package store

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/keyward/keyward/cluster"
	"github.com/keyward/keyward/fsm"
	"github.com/keyward/keyward/internal/seqid"
	"github.com/keyward/keyward/kms"
)

// Proposer commits an encoded fsm command through Raft and returns the FSM's response and the
// log index. cluster.Node implements it.
type Proposer interface {
	Apply(ctx context.Context, cmd []byte) (any, uint64, error)
}

// StateReader gives the local replicated state. fsm.FSM implements it.
type StateReader interface {
	State() *fsm.State
	Applied() <-chan struct{}
}

// ReadIndexer returns an index that makes a read of local state applied up to it
// linearizable, and says how fresh the local state is. cluster.Node implements it.
type ReadIndexer interface {
	ReadIndex(ctx context.Context) (uint64, error)
	// LastContact is the time since the node last heard from the leader: 0 on the leader,
	// negative if never.
	LastContact() time.Duration
	// Staleness is how old the local state may be: the time since the newest instant before
	// which it provably holds every committed write; negative if unknown.
	Staleness() time.Duration
	KnownLeader() bool
}

// Sealer encrypts values for one secret version and decrypts them. kms.Envelope implements it.
type Sealer interface {
	Seal(ctx context.Context, secretID string, version uint64, plaintext []byte) (kms.Sealed, error)
	Open(ctx context.Context, secretID string, version uint64, s kms.Sealed) ([]byte, error)
}

// Deps are what a Service needs.
type Deps struct {
	Proposer Proposer
	State    StateReader
	Reads    ReadIndexer
	Restorer Restorer
	// Audit, when set, receives a record of every secret operation and login; NodeID names
	// this node in them.
	Audit  Auditor
	NodeID string
	// JWT verifies JWT logins (nil: JWT login off).
	JWT    JWTVerifier
	Sealer Sealer
	Log    *slog.Logger
	Now    func() time.Time // defaults to time.Now
	NewID  func() string    // defaults to random UUIDs
	// NewAuditID names audit records; defaults to a seqid generator (unique, not random, so
	// that shipped batches compress well).
	NewAuditID func() string
}

// Service is the secret service of one node.
type Service struct {
	d Deps
	// writeLocks serialise writes to the same path on this node (striped by path hash), so
	// local writers to a hot secret queue instead of racing for the same version number.
	writeLocks [256]sync.Mutex
}

// New returns a Service.
func New(d Deps) *Service {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.NewID == nil {
		d.NewID = func() string { return uuid.NewString() }
	}
	if d.NewAuditID == nil {
		d.NewAuditID = seqid.New().Next
	}
	return &Service{d: d}
}

func (s *Service) pathLock(path string) *sync.Mutex {
	h := fnv.New32a()
	h.Write([]byte(path))
	return &s.writeLocks[h.Sum32()%uint32(len(s.writeLocks))]
}

// maxWriteAttempts bounds how often a write is re-sealed after another write to the same secret
// (from another node, or before this node caught up) took the version number it encrypted for.
const maxWriteAttempts = 16

// propose commits cmd and returns the FSM result, translating cluster errors.
func (s *Service) propose(ctx context.Context, cmd []byte) (*fsm.Result, error) {
	resp, _, err := s.d.Proposer.Apply(ctx, cmd)
	if err != nil {
		return nil, clusterError(err)
	}
	res, ok := resp.(*fsm.Result)
	if !ok {
		return nil, fmt.Errorf("unexpected FSM response %T", resp)
	}
	return res, nil
}

// clusterError translates the cluster's errors into the service's.
func clusterError(err error) error {
	switch {
	case errors.Is(err, cluster.ErrNotLeader), errors.Is(err, cluster.ErrTimeout), errors.Is(err, cluster.ErrShutdown):
		return fmt.Errorf("%w: %w", ErrNoLeader, err)
	case errors.Is(err, cluster.ErrOutcomeUnknown):
		return fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
	}
	return err
}

// waitApplied waits until the local state has applied index, so a retry sees the write that
// beat it.
func (s *Service) waitApplied(ctx context.Context, index uint64) error {
	for {
		ch := s.d.State.Applied()
		if s.d.State.State().Index() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// ReadOptions choose a read's consistency. The zero value is linearizable.
type ReadOptions struct {
	// Stale answers from local state without asking the leader.
	Stale bool
	// MaxStale (implies Stale) refuses the read when the local state may be older than
	// this (see ReadIndexer.Staleness).
	MaxStale time.Duration
	// MinIndex waits (bounded) until local state has applied at least this index.
	MinIndex uint64
}

// ReadInfo says how a read was served.
type ReadInfo struct {
	Index       uint64        // applied index of the state that was read
	LastContact time.Duration // since the last contact with the leader; 0 on the leader, <0 never
	Staleness   time.Duration // how old the state may be; <0 unknown
	KnownLeader bool
	Consistency string // "linearizable" or "stale"
}

// maxMinIndexWait bounds how long a read waits for min_index.
const maxMinIndexWait = 10 * time.Second

// readState returns local state for a read with the given consistency.
func (s *Service) readState(ctx context.Context, ro ReadOptions) (*fsm.State, ReadInfo, error) {
	info := ReadInfo{Consistency: "linearizable"}
	if ro.MinIndex > 0 {
		wctx, cancel := context.WithTimeout(ctx, maxMinIndexWait)
		err := s.waitApplied(wctx, ro.MinIndex)
		cancel()
		if err != nil {
			return nil, info, fmt.Errorf("%w: index %d not applied within %s", ErrIndexNotReached, ro.MinIndex, maxMinIndexWait)
		}
	}
	if ro.Stale || ro.MaxStale > 0 {
		info.Consistency = "stale"
		age := s.d.Reads.Staleness()
		if ro.MaxStale > 0 && (age < 0 || age > ro.MaxStale) {
			if age < 0 {
				return nil, info, fmt.Errorf("%w: this node does not know how old its state is yet, max_stale %s", ErrTooStale, ro.MaxStale)
			}
			return nil, info, fmt.Errorf("%w: this node's state may be %s old, max_stale %s", ErrTooStale, age.Round(time.Millisecond), ro.MaxStale)
		}
	} else {
		idx, err := s.d.Reads.ReadIndex(ctx)
		if err != nil {
			return nil, info, clusterError(err)
		}
		if err := s.waitApplied(ctx, idx); err != nil {
			return nil, info, fmt.Errorf("%w: waiting for index %d: %w", ErrNoLeader, idx, err)
		}
	}
	st := s.d.State.State()
	info.Index = st.Index()
	info.LastContact = s.d.Reads.LastContact()
	info.Staleness = s.d.Reads.Staleness()
	info.KnownLeader = s.d.Reads.KnownLeader()
	return st, info, nil
}

// requireLive fails with ErrNotFound unless sec (looked up at path; nil when absent) is a
// secret that is not soft-deleted.
func requireLive(sec *fsm.Secret, path string) error {
	if sec == nil || sec.Deleted() {
		return fmt.Errorf("secret %q: %w", path, ErrNotFound)
	}
	return nil
}

// fsmError maps an FSM business failure to the service's errors.
func fsmError(err error, cas *uint64) error {
	var ce *fsm.ConflictError
	switch {
	case errors.As(err, &ce) && ce.UserCAS && cas != nil:
		return &CASError{Expected: *cas, Current: ce.Current}
	case errors.Is(err, fsm.ErrNotFound):
		if detail := strings.TrimSuffix(err.Error(), ": "+fsm.ErrNotFound.Error()); detail != err.Error() {
			return fmt.Errorf("%s: %w", detail, ErrNotFound)
		}
		return ErrNotFound
	case errors.Is(err, fsm.ErrDeleted):
		return ErrDeleted
	case errors.Is(err, fsm.ErrNotDeleted):
		return ErrNotDeleted
	case errors.Is(err, fsm.ErrVersionIsCurrent):
		return ErrVersionIsCurrent
	case errors.Is(err, fsm.ErrInvalid):
		return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	return err
}

func kmsError(err error) error {
	if errors.Is(err, kms.ErrUnavailable) {
		return fmt.Errorf("%w: %w", ErrKMS, err)
	}
	return err
}
