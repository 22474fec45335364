package api

import (
	"errors"
	"net/http"

	"github.com/keyward/keyward/api/wire"
	"github.com/keyward/keyward/cluster"
	"github.com/keyward/keyward/store"
)

// Errors raised by the HTTP layer itself.
var (
	// errBadJSON: the body is not valid JSON for the endpoint (syntax, types, unknown fields).
	errBadJSON = errors.New("invalid JSON body")
	// errBodyTooLarge: the body is over wire.MaxBodyBytes.
	errBodyTooLarge = errors.New("request body too large")
	// errNoRoute, errMethod: unknown URL, or a known URL with another method.
	errNoRoute = errors.New("no such route")
	errMethod  = errors.New("method not allowed")
)

// errorTable is the one place that maps errors to HTTP status codes and stable error codes.
// The first entry that matches with errors.Is wins; anything else is a 500.
var errorTable = []struct {
	err    error
	status int
	code   string
}{
	{errBadJSON, http.StatusBadRequest, "invalid_json"},
	{errBodyTooLarge, http.StatusRequestEntityTooLarge, "too_large"},
	{errNoRoute, http.StatusNotFound, "no_such_route"},
	{errMethod, http.StatusMethodNotAllowed, "method_not_allowed"},
	{store.ErrUnauthenticated, http.StatusUnauthorized, "unauthenticated"},
	{store.ErrLoginFailed, http.StatusUnauthorized, "login_failed"},
	{store.ErrForbidden, http.StatusForbidden, "forbidden"},
	{store.ErrNotInitialized, http.StatusServiceUnavailable, "not_initialized"},
	{store.ErrAlreadyInitialized, http.StatusConflict, "already_initialized"},
	{store.ErrAuditUnavailable, http.StatusServiceUnavailable, "audit_unavailable"},
	{store.ErrInvalidPath, http.StatusBadRequest, "invalid_path"},
	{store.ErrInvalidValue, http.StatusBadRequest, "invalid_value"},
	{store.ErrInvalidArgument, http.StatusBadRequest, "invalid_argument"},
	{store.ErrTooLarge, http.StatusRequestEntityTooLarge, "too_large"},
	{store.ErrNotFound, http.StatusNotFound, "not_found"},
	{store.ErrCASMismatch, http.StatusConflict, "cas_mismatch"},
	{store.ErrDeleted, http.StatusConflict, "secret_deleted"},
	{store.ErrNotDeleted, http.StatusConflict, "not_deleted"},
	{store.ErrVersionIsCurrent, http.StatusConflict, "version_is_current"},
	{store.ErrDestroyed, http.StatusGone, "version_destroyed"},
	{store.ErrNoLeader, http.StatusServiceUnavailable, "no_leader"},
	{store.ErrOutcomeUnknown, http.StatusServiceUnavailable, "outcome_unknown"},
	{store.ErrBusy, http.StatusServiceUnavailable, "busy"},
	{store.ErrTooStale, http.StatusServiceUnavailable, "too_stale"},
	{store.ErrIndexNotReached, http.StatusServiceUnavailable, "index_not_reached"},
	{store.ErrBadSnapshot, http.StatusBadRequest, "invalid_snapshot"},
	{store.ErrRotationBusy, http.StatusConflict, "rotation_busy"},
	{cluster.ErrNotFound, http.StatusNotFound, "not_found"},
	{cluster.ErrNotLeader, http.StatusServiceUnavailable, "no_leader"},
	{cluster.ErrOutcomeUnknown, http.StatusServiceUnavailable, "outcome_unknown"},
	{cluster.ErrTimeout, http.StatusServiceUnavailable, "no_leader"},
	{cluster.ErrShutdown, http.StatusServiceUnavailable, "no_leader"},
	{store.ErrKMS, http.StatusServiceUnavailable, "kms_unavailable"},
}

// toWire returns the status and body for err. Messages of 500s are generic: their causes may
// name internals, and are logged instead.
func toWire(err error) (int, wire.Error) {
	for _, e := range errorTable {
		if errors.Is(err, e.err) {
			we := wire.Error{Code: e.code, Message: err.Error()}
			var ce *store.CASError
			if errors.As(err, &ce) {
				cur := ce.Current
				we.CurrentVersion = &cur
			}
			return e.status, we
		}
	}
	return http.StatusInternalServerError, wire.Error{Code: "internal", Message: "internal error"}
}
