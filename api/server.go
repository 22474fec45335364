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
	"github.com/keyward/keyward/cluster"
	"github.com/keyward/keyward/internal/seqid"
	"github.com/keyward/keyward/store"
)

// Secrets is the secret service the API calls; store.Service implements it.
type Secrets interface {
	Put(ctx context.Context, in store.PutInput) (*store.WriteResult, error)
	Get(ctx context.Context, path string, sel store.Selector, ro store.ReadOptions) (*store.Value, error)
	Versions(ctx context.Context, path string, ro store.ReadOptions) (*store.Metadata, error)
	List(ctx context.Context, prefix, after string, limit int, ro store.ReadOptions) (*store.ListResult, error)
	// Snapshot writes a consistent, checksummed snapshot of the replicated state.
	Snapshot(ctx context.Context, w io.Writer) error
	// Restore verifies a snapshot written by Snapshot and restores it into the cluster.
	Restore(ctx context.Context, r io.Reader) error
	Destroy(ctx context.Context, path string, versions []uint64) ([]uint64, error)
	Delete(ctx context.Context, path string, purge bool) error
	Undelete(ctx context.Context, path string) error
}

// Health reports the node's view of the cluster for /v1/sys/health.
type Health interface {
	Health() wire.HealthResponse
}

// Cluster is the operator's handle on the local node's cluster membership.
type Cluster interface {
	// Snapshot forces a local Raft snapshot now.
	Snapshot() error
	Members() []cluster.Member
	Peers(ctx context.Context) ([]cluster.Peer, error)
	ClusterStatus(ctx context.Context) (cluster.ClusterStatus, error)
	JoinCluster(ctx context.Context, addr string) error
	Remove(ctx context.Context, id string) error
	TransferLeader(ctx context.Context, id string) error
	IsLeader() bool
	// LeaderAPI is the leader's API URL, "" when unknown.
	LeaderAPI() string
}

// Deps are what the API needs.
type Deps struct {
	Secrets Secrets
	// Identity authenticates requests; nil turns authentication off (unit tests only: every
	// caller is then an admin).
	Identity Identity
	Accounts Accounts
	// Rotation serves the rotation endpoints (nil: not served).
	Rotation Rotations
	Health   Health
	Cluster  Cluster
	// Metrics serves /metrics (nil: not served); Observer records each request.
	Metrics  http.Handler
	Observer RequestObserver
	Log      *slog.Logger
}

// RequestObserver records one finished request by route template and status.
type RequestObserver interface {
	Observe(method, route string, status int, d time.Duration)
}

// Server is the HTTP handler.
type Server struct {
	d      Deps
	router *mux.Router
	reqIDs *seqid.Gen // names each request (X-Request-Id, and its audit records)
}

// New builds the handler with every route.
func New(d Deps) *Server {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{d: d, reqIDs: seqid.New()}
	r := mux.NewRouter()
	// Keep the path as sent: a path with "..", "." or "//" is invalid input, not a redirect.
	r.SkipClean(true)
	r.HandleFunc("/v1/secrets", s.list).Methods(http.MethodGet)
	r.HandleFunc("/v1/secrets/{path:.*}", s.redirectable(s.put)).Methods(http.MethodPut, http.MethodPost)
	r.HandleFunc("/v1/secrets/{path:.*}", s.get).Methods(http.MethodGet)
	r.HandleFunc("/v1/secrets/{path:.*}", s.redirectable(s.delete)).Methods(http.MethodDelete)
	r.HandleFunc("/v1/versions/{path:.*}", s.versions).Methods(http.MethodGet)
	r.HandleFunc("/v1/destroy/{path:.*}", s.redirectable(s.destroy)).Methods(http.MethodPost)
	r.HandleFunc("/v1/restore/{path:.*}", s.redirectable(s.restore)).Methods(http.MethodPost)
	r.HandleFunc("/v1/sys/health", s.health).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc("/v1/sys/raft/snapshot", s.adminOnly(s.raftSnapshot)).Methods(http.MethodPost)
	r.HandleFunc("/v1/sys/snapshot", s.snapshotSave).Methods(http.MethodGet)
	r.HandleFunc("/v1/sys/snapshot", s.snapshotRestore).Methods(http.MethodPut, http.MethodPost)
	r.HandleFunc("/v1/sys/cluster/members", s.adminOnly(s.clusterMembers)).Methods(http.MethodGet)
	r.HandleFunc("/v1/sys/cluster/peers", s.adminOnly(s.clusterPeers)).Methods(http.MethodGet)
	r.HandleFunc("/v1/sys/cluster/status", s.adminOnly(s.clusterStatus)).Methods(http.MethodGet)
	r.HandleFunc("/v1/sys/cluster/join", s.adminOnly(s.clusterJoin)).Methods(http.MethodPost)
	r.HandleFunc("/v1/sys/cluster/remove", s.adminOnly(s.clusterRemove)).Methods(http.MethodPost)
	r.HandleFunc("/v1/sys/cluster/transfer-leader", s.adminOnly(s.clusterTransfer)).Methods(http.MethodPost)
	if d.Accounts != nil {
		s.identityRoutes(r)
	}
	if d.Rotation != nil {
		s.rotationRoutes(r)
	}
	if d.Metrics != nil {
		r.Handle("/metrics", d.Metrics).Methods(http.MethodGet)
	}
	r.Use(s.observe, s.authenticate)
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { s.fail(w, nil, errNoRoute) })
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { s.fail(w, nil, errMethod) })
	s.router = r
	return s
}

// redirectable wraps a write handler: by default a follower forwards the write to the leader
// itself; a client that asks (?redirect or header X-Keyward-Redirect: true) gets a 307 to the
// leader's API instead.
func (s *Server) redirectable(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !wantsRedirect(r) || s.d.Cluster == nil || s.d.Cluster.IsLeader() {
			h(w, r)
			return
		}
		leader := s.d.Cluster.LeaderAPI()
		if leader == "" {
			s.fail(w, r, store.ErrNoLeader)
			return
		}
		w.Header().Set("Location", strings.TrimSuffix(leader, "/")+r.URL.RequestURI())
		w.WriteHeader(http.StatusTemporaryRedirect)
	}
}

func wantsRedirect(r *http.Request) bool {
	if r.URL.Query().Has("redirect") {
		return true
	}
	v, _ := strconv.ParseBool(r.Header.Get(wire.HeaderRedirect))
	return v
}

// ServeHTTP dispatches a request; observe (a router middleware) measures matched routes, and
// unmatched ones are measured here.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	s.router.ServeHTTP(rec, r)
	if !rec.observed {
		s.record(r, "unmatched", rec.status, time.Since(start))
	}
}

// observe logs and measures each request by its route template (never bodies).
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		next.ServeHTTP(w, r)
		route := "unknown"
		if cr := mux.CurrentRoute(r); cr != nil {
			if t, err := cr.GetPathTemplate(); err == nil {
				route = t
			}
		}
		status := http.StatusOK
		if rec, ok := w.(*statusRecorder); ok {
			rec.observed = true
			status = rec.status
		}
		s.record(r, route, status, time.Since(start))
	})
}

func (s *Server) record(r *http.Request, route string, status int, d time.Duration) {
	if s.d.Observer != nil {
		s.d.Observer.Observe(r.Method, route, status, d)
	}
	if s.d.Log.Enabled(r.Context(), slog.LevelDebug) {
		s.d.Log.Debug("request", "method", r.Method, "route", route, "status", status,
			"remote", r.RemoteAddr, "duration", d)
	}
}

type statusRecorder struct {
	http.ResponseWriter
	status   int
	wrote    bool
	observed bool
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status, r.wrote = code, true
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.ResponseWriter.Write(b)
}

// Flush lets streaming handlers push data through.
func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
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

// setReadHeaders tells the client how fresh a read was.
func setReadHeaders(w http.ResponseWriter, info store.ReadInfo) {
	setIndex(w, info.Index)
	h := w.Header()
	lc := info.LastContact.Milliseconds()
	if info.LastContact < 0 {
		lc = -1
	}
	h.Set(wire.HeaderLastContact, strconv.FormatInt(lc, 10))
	age := info.Staleness.Milliseconds()
	if info.Staleness < 0 {
		age = -1
	}
	h.Set(wire.HeaderStaleness, strconv.FormatInt(age, 10))
	h.Set(wire.HeaderKnownLeader, strconv.FormatBool(info.KnownLeader))
	h.Set(wire.HeaderConsistency, info.Consistency)
}

// readOptions parses ?stale, ?max_stale=DUR and ?min_index=N.
func readOptions(r *http.Request) (store.ReadOptions, error) {
	q := r.URL.Query()
	var ro store.ReadOptions
	if q.Has("stale") {
		v := q.Get("stale")
		if v == "" {
			ro.Stale = true
		} else {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return ro, fmt.Errorf("%w: stale must be empty, true or false", store.ErrInvalidArgument)
			}
			ro.Stale = b
		}
	}
	if v := q.Get("max_stale"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return ro, fmt.Errorf("%w: max_stale must be a positive duration such as 5s", store.ErrInvalidArgument)
		}
		ro.MaxStale, ro.Stale = d, true
	}
	if v := q.Get("min_index"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return ro, fmt.Errorf("%w: min_index must be a non-negative integer", store.ErrInvalidArgument)
		}
		ro.MinIndex = n
	}
	return ro, nil
}
