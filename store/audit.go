package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/keyward/keyward/fsm"
)

// Auditor makes audit records durable on this node before a request is answered.
// store/audit.Log implements it.
type Auditor interface {
	Append(ctx context.Context, r fsm.AuditRecord) (fsm.AuditRecord, error)
}

// reasonOf names why an operation failed, for the audit record (never a value or a token).
func reasonOf(err error) string {
	for _, e := range []struct {
		err  error
		name string
	}{
		{ErrUnauthenticated, "unauthenticated"}, {ErrForbidden, "forbidden"}, {ErrNotInitialized, "not_initialized"},
		{ErrNotFound, "not_found"}, {ErrCASMismatch, "cas_mismatch"}, {ErrDeleted, "secret_deleted"},
		{ErrDestroyed, "version_destroyed"}, {ErrInvalidPath, "invalid_path"}, {ErrInvalidValue, "invalid_value"},
		{ErrInvalidArgument, "invalid_argument"}, {ErrTooLarge, "too_large"}, {ErrNoLeader, "no_leader"},
		{ErrOutcomeUnknown, "outcome_unknown"}, {ErrKMS, "kms_unavailable"}, {ErrLoginFailed, "login_failed"},
	} {
		if errors.Is(err, e.err) {
			return e.name
		}
	}
	return "error"
}

// lookup finds the secret at path in st (nil if there is none) and starts the audit record of
// an operation on it.
func lookup(st *fsm.State, action, path string) (*fsm.Secret, record) {
	rec := record{action: action, path: path}
	sec, _ := st.SecretByPath(path)
	if sec != nil {
		rec.secretID = sec.ID
	}
	return sec, rec
}

// record is what one audited operation touched.
type record struct {
	action    string
	path      string
	secretID  string
	versionID string
}

// auditRecord builds the audit record of an operation by the caller in ctx that ended with opErr.
func (s *Service) auditRecord(ctx context.Context, rec record, opErr error) fsm.AuditRecord {
	c, _ := CallerFrom(ctx)
	r := fsm.AuditRecord{
		ID: s.d.NewAuditID(), SecretID: rec.secretID, Path: rec.path, VersionID: rec.versionID,
		PrincipalType: string(c.Type), PrincipalID: c.ID, AuthMethod: c.Method, Action: rec.action,
		IPAddress: c.RemoteIP, Success: opErr == nil, RequestID: c.RequestID, AccessedAt: s.d.Now().UnixNano(),
		NodeID: s.d.NodeID,
	}
	if opErr != nil {
		r.Reason = reasonOf(opErr)
	}
	return r
}

// audited appends the audit record of an operation and returns opErr, or — if the record
// could not be made durable — ErrAuditUnavailable: the request then fails closed.
func (s *Service) audited(ctx context.Context, rec record, opErr error) error {
	if s.d.Audit == nil {
		return opErr
	}
	if _, err := s.d.Audit.Append(ctx, s.auditRecord(ctx, rec, opErr)); err != nil {
		s.d.Log.Error("audit record not durable: failing the request", "action", rec.action, "err", err)
		return fmt.Errorf("%w: %w", ErrAuditUnavailable, err)
	}
	return opErr
}
