package fsm

import (
	"errors"
	"fmt"
)

// Business failures returned (as values, inside a Result) to the proposer. They never stop a
// node: every replica reaches the same verdict.
var (
	// ErrNotFound: no such secret, version or policy.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the command's expectation about the secret no longer holds; see ConflictError.
	ErrConflict = errors.New("conflict")
	// ErrDeleted: the secret is soft-deleted; restore or purge it first.
	ErrDeleted = errors.New("secret is deleted")
	// ErrNotDeleted: restore of a secret that is not deleted.
	ErrNotDeleted = errors.New("secret is not deleted")
	// ErrVersionIsCurrent: the CURRENT version cannot be destroyed.
	ErrVersionIsCurrent = errors.New("version is current")
	// ErrInvalid: the command is well formed but its content is not acceptable.
	ErrInvalid = errors.New("invalid command")
)

// ConflictError says why a write's expectation failed. It matches ErrConflict with errors.Is.
type ConflictError struct {
	// UserCAS is true when the caller's own check-and-set failed (as opposed to an expectation
	// the proposer made on the caller's behalf, which it may retry).
	UserCAS bool
	// Current is the secret's CURRENT version (0 when the secret does not exist).
	Current uint64
	// Latest is the secret's highest version number (0 when the secret does not exist).
	Latest uint64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("conflict: current version %d, latest version %d", e.Current, e.Latest)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }
