package client

import (
	"errors"
	"fmt"
)

// APIError is a non-2xx answer of the server. Code is the API's stable error code (see
// docs/API.md), or "http_<status>" when the body is not an API error.
type APIError struct {
	Status  int
	Code    string
	Message string
	// CurrentVersion is the actual CURRENT version on cas_mismatch (0: no secret).
	CurrentVersion *uint64
}

// Error gives "code: message (HTTP status)".
func (e *APIError) Error() string {
	return fmt.Sprintf("%s: %s (HTTP %d)", e.Code, e.Message, e.Status)
}

// IsCode reports whether err is, or wraps, an *APIError with the given code.
func IsCode(err error, code string) bool {
	e, ok := errors.AsType[*APIError](err)
	return ok && e.Code == code
}
