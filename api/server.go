// Package api serves keyward's HTTP API v1 (docs/API.md) over a store.Service.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/keyward/keyward/api/wire"
	"github.com/keyward/keyward/store"
)

// Secrets is the secret service the API calls; store.Service implements it.
type Secrets interface {
	Put(ctx context.Context, in store.PutInput) (*store.WriteResult, error)
	Get(ctx context.Context, path string, sel store.Selector) (*store.Value, error)
	Versions(ctx context.Context, path string) (*store.Metadata, error)
	List(ctx context.Context, prefix, after string, limit int) (*store.ListResult, error)
	Destroy(ctx context.Context, path string, versions []uint64) ([]uint64, error)
	Delete(ctx context.Context, path string, purge bool) error
	Restore(ctx context.Context, path string) error
}

// Health reports the node's view of the cluster for /v1/sys/health.
type Health interface {
	Health() wire.HealthResponse
}

// Raft is the operator's handle on the local Raft node.
type Raft interface {
	// Snapshot forces a Raft snapshot now.
	Snapshot() error
}

// Deps are what the API needs.
type Deps struct {
	Secrets Secrets
	Health  Health
	Raft    Raft
	Log     *slog.Logger
}

// Server is the HTTP handler.
type Server struct {
	d      Deps
	router *mux.Router
}

// New builds the handler with every route.
func New(d Deps) *Server {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{d: d}
	r := mux.NewRouter()
	// Keep the path as sent: a path with "..", "." or "//" is invalid input, not a redirect.
	r.SkipClean(true)
	r.HandleFunc("/v1/secrets", s.list).Methods(http.MethodGet)
	r.HandleFunc("/v1/secrets/{path:.*}", s.put).Methods(http.MethodPut, http.MethodPost)
	r.HandleFunc("/v1/secrets/{path:.*}", s.get).Methods(http.MethodGet)
	r.HandleFunc("/v1/secrets/{path:.*}", s.delete).Methods(http.MethodDelete)
	r.HandleFunc("/v1/versions/{path:.*}", s.versions).Methods(http.MethodGet)
	r.HandleFunc("/v1/destroy/{path:.*}", s.destroy).Methods(http.MethodPost)
	r.HandleFunc("/v1/restore/{path:.*}", s.restore).Methods(http.MethodPost)
	r.HandleFunc("/v1/sys/health", s.health).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc("/v1/sys/raft/snapshot", s.snapshot).Methods(http.MethodPost)
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { s.fail(w, nil, errNoRoute) })
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { s.fail(w, nil, errMethod) })
	s.router = r
	return s
}

// ServeHTTP logs each request (never bodies) and dispatches it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	s.router.ServeHTTP(rec, r)
	s.d.Log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", rec.status,
		"remote", r.RemoteAddr, "duration", time.Since(start))
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (s *Server) writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		s.d.Log.Debug("write response", "err", err)
	}
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, we := toWire(err)
	if status >= 500 {
		route := ""
		if r != nil {
			route = r.URL.Path
		}
		s.d.Log.Error("request failed", "path", route, "status", status, "code", we.Code, "err", err)
	}
	s.writeJSON(w, status, wire.ErrorResponse{Error: we})
}

// decode reads a JSON body strictly: size-capped, one value only, and an object's top-level
// names must be exactly (case-sensitively) v's JSON field names, each at most once.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, wire.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errBodyTooLarge
		}
		return fmt.Errorf("%w: reading body: %v", errBadJSON, err)
	}
	if err := checkFieldNames(body, v); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: body is empty", errBadJSON)
		}
		return fmt.Errorf("%w: %v", errBadJSON, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: body holds more than one JSON value", errBadJSON)
	}
	return nil
}

// checkFieldNames refuses top-level names of a JSON object that are not exactly one of the
// json tag names of *v, or that repeat: encoding/json matches names case-insensitively and
// lets the last duplicate win. Anything that is not a well-formed object is left to Decode.
func checkFieldNames(body []byte, v any) error {
	t := reflect.TypeOf(v).Elem()
	known := make(map[string]bool, t.NumField())
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
			known[name] = true
		}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		name, _ := tok.(string)
		switch {
		case !known[name]:
			return fmt.Errorf("%w: unknown field %q", errBadJSON, name)
		case seen[name]:
			return fmt.Errorf("%w: field %q given twice", errBadJSON, name)
		}
		seen[name] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil
		}
	}
	return nil
}

func setIndex(w http.ResponseWriter, index uint64) {
	w.Header().Set(wire.HeaderIndex, strconv.FormatUint(index, 10))
}
