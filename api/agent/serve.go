package agent

import (
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/keyward/keyward/api/client"
)

// Response headers of the local endpoint.
const (
	HeaderStale = "X-Keyward-Stale" // "true" when the value was served during an outage
	HeaderAge   = "X-Keyward-Age"   // seconds since the value was fetched from the cluster
)

// SecretResponse is the local endpoint's answer to GET /v1/secret/{path}. Value is set when
// the bytes are valid UTF-8, ValueBase64 otherwise. Stale is true when the cluster could not
// be reached and the cached value was served; AgeSeconds is how old the value is.
type SecretResponse struct {
	Path        string  `json:"path"`
	Version     uint64  `json:"version"`
	State       string  `json:"state"`
	Value       *string `json:"value,omitempty"`
	ValueBase64 *string `json:"value_base64,omitempty"`
	Stale       bool    `json:"stale"`
	AgeSeconds  float64 `json:"age_seconds"`
}

// Handler returns the local endpoint: GET /v1/secret/{path} (?version=N or ?state=S, and
// ?format=raw for the bare value) for the configured secrets, GET /v1/health and GET /metrics.
// With a local token configured, /v1/ requests must carry it.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/secret/{path...}", a.serveSecret)
	mux.HandleFunc("GET /v1/health", a.serveHealth)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		if a.localToken != "" && strings.HasPrefix(r.URL.Path, "/v1/") && !a.tokenOK(r) {
			writeError(rec, http.StatusUnauthorized, "unauthenticated", "this endpoint needs the agent's local token")
		} else {
			mux.ServeHTTP(rec, r)
		}
		a.metrics.requests.WithLabelValues(strconv.Itoa(rec.status)).Inc()
	})
}

// tokenOK reports whether r carries the local token.
func (a *Agent) tokenOK(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(h[7:])), []byte(a.localToken)) == 1
}

func (a *Agent) serveSecret(w http.ResponseWriter, r *http.Request) {
	path := r.PathValue("path")
	q := r.URL.Query()
	var sel client.Selector
	if v := q.Get("version"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			writeError(w, http.StatusBadRequest, "invalid_argument", "version is a positive integer")
			return
		}
		sel.Version = n
	}
	sel.State = q.Get("state")
	if !a.secrets[secretKey{path, sel}] {
		writeError(w, http.StatusNotFound, "not_configured",
			"this agent does not serve that secret and selector: add it to the agent's secrets")
		return
	}
	s, info, err := a.cache.Get(r.Context(), path, sel)
	if err != nil {
		if ae, ok := errors.AsType[*client.APIError](err); ok && ae.Status < 500 && ae.Status != http.StatusTooManyRequests {
			writeError(w, ae.Status, ae.Code, ae.Message)
			return
		}
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the cluster is unavailable and nothing is cached: "+err.Error())
		return
	}
	w.Header().Set(HeaderStale, strconv.FormatBool(info.Stale))
	w.Header().Set(HeaderAge, strconv.FormatFloat(info.Age.Seconds(), 'f', 3, 64))
	w.Header().Set("Cache-Control", "no-store")
	if q.Get("format") == "raw" {
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(s.Value)
		return
	}
	out := SecretResponse{Path: s.Path, Version: s.Version, State: s.State, Stale: info.Stale, AgeSeconds: info.Age.Seconds()}
	if utf8.Valid(s.Value) {
		v := string(s.Value)
		out.Value = &v
	} else {
		v := base64.StdEncoding.EncodeToString(s.Value)
		out.ValueBase64 = &v
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *Agent) serveHealth(w http.ResponseWriter, _ *http.Request) {
	st := a.cache.Stats()
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "stale_age_seconds": st.MaxStaleAge.Round(time.Millisecond).Seconds(),
		"stale_alert": st.Alert})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// statusWriter remembers the status written, for the request counter.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}
