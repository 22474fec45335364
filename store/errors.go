package store

import (
	"errors"
	"fmt"
)

// Errors of the secret service. The HTTP layer maps each to one status and code.
var (
	// ErrInvalidPath: the path breaks the path rules.
	ErrInvalidPath = errors.New("invalid path")
	// ErrInvalidValue: the value is empty or otherwise unusable.
	ErrInvalidValue = errors.New("invalid value")
	// ErrInvalidArgument: a selector, limit, version list or option is out of range.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrTooLarge: the value is over MaxValueBytes.
	ErrTooLarge = errors.New("value too large")
	// ErrNotFound: no such live secret, or no such version.
	ErrNotFound = errors.New("not found")
	// ErrCASMismatch: the caller's check-and-set failed; see CASError for the actual version.
	ErrCASMismatch = errors.New("check-and-set mismatch")
	// ErrDeleted: the secret is soft-deleted; restore or purge it first.
	ErrDeleted = errors.New("secret is deleted")
	// ErrNotDeleted: restore of a secret that is not deleted.
	ErrNotDeleted = errors.New("secret is not deleted")
	// ErrVersionIsCurrent: the CURRENT version cannot be destroyed.
	ErrVersionIsCurrent = errors.New("the current version cannot be destroyed")
	// ErrDestroyed: the version's key and ciphertext are gone (destroyed or dropped by retention).
	ErrDestroyed = errors.New("version destroyed")
	// ErrNoLeader: the cluster has no leader now; nothing was written. Retry.
	ErrNoLeader = errors.New("no leader")
	// ErrOutcomeUnknown: leadership was lost while a write committed; it may or may not have
	// happened.
	ErrOutcomeUnknown = errors.New("write outcome unknown")
	// ErrTooStale: a stale read's max_stale bound was exceeded.
	ErrTooStale = errors.New("local state too stale")
	// ErrIndexNotReached: a min_index read waited too long for the index.
	ErrIndexNotReached = errors.New("index not reached")
	// ErrBusy: other writes to the same secret kept winning; nothing was written. Retry.
	ErrBusy = errors.New("too many concurrent writes to this secret")
	// ErrKMS: the key-encryption-key provider failed.
	ErrKMS = errors.New("key provider failed")
)

// CASError reports the secret's actual CURRENT version after a failed check-and-set.
type CASError struct {
	Expected, Current uint64
}

func (e *CASError) Error() string {
	return fmt.Sprintf("expected version %d, current version is %d", e.Expected, e.Current)
}

// Is makes errors.Is(err, ErrCASMismatch) true.
func (e *CASError) Is(target error) bool { return target == ErrCASMismatch }
