package api

import (
	"context"
	"crypto/x509"
	"net"
	"net/http"
	"strings"

	"github.com/gorilla/mux"

	"github.com/keyward/keyward/api/wire"
	"github.com/keyward/keyward/store"
)

// Identity is the authentication side of the service; store.Service implements it.
type Identity interface {
	Authenticate(ctx context.Context, token string) (store.Caller, error)
	CertCaller(id string) store.Caller
}

// publicRoutes answer without credentials.
var publicRoutes = map[string]bool{
	"/v1/sys/health":          true,
	"/metrics":                true,
	"/v1/sys/init":            true,
	"/v1/auth/userpass/login": true,
	"/v1/auth/approle/login":  true,
	"/v1/auth/jwt/login":      true,
}

// authenticate is a router middleware: it puts the caller (from a token, or a verified client
// certificate) and the request's address and id into the context, and refuses other
// requests to protected routes with 401.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqID := s.reqIDs.Next()
		w.Header().Set("X-Request-Id", reqID)
		route := ""
		if cr := mux.CurrentRoute(r); cr != nil {
			route, _ = cr.GetPathTemplate()
		}
		c, err := s.caller(r)
		c.RemoteIP, c.RequestID = remoteIP(r), reqID
		if err != nil && !publicRoutes[route] {
			// Audit the refusal too: who tried what, from where.
			ctx := store.WithCaller(r.Context(), c)
			s.fail(w, r.WithContext(ctx), err)
			return
		}
		next.ServeHTTP(w, r.WithContext(store.WithCaller(r.Context(), c)))
	})
}

func (s *Server) caller(r *http.Request) (store.Caller, error) {
	if s.d.Identity == nil {
		return store.Caller{Admin: true, Method: "none"}, nil
	}
	if tok := bearer(r); tok != "" {
		return s.d.Identity.Authenticate(r.Context(), tok)
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		if id := certPrincipal(r.TLS.VerifiedChains[0][0]); id != "" {
			return s.d.Identity.CertCaller(id), nil
		}
	}
	return store.Caller{}, store.ErrUnauthenticated
}

// certPrincipal names the SERVICE principal of a verified client certificate: its SPIFFE URI
// SAN, or failing that its common name.
func certPrincipal(c *x509.Certificate) string {
	for _, u := range c.URIs {
		if u.Scheme == "spiffe" {
			return u.String()
		}
	}
	return c.Subject.CommonName
}

func bearer(r *http.Request) string {
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return strings.TrimSpace(r.Header.Get(wire.HeaderToken))
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// adminOnly wraps an operator endpoint that has no audit of its own in the service.
func (s *Server) adminOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, ok := store.CallerFrom(r.Context())
		if !ok || !c.Admin {
			s.fail(w, r, store.ErrForbidden)
			return
		}
		h(w, r)
	}
}

func callerOf(ctx context.Context) store.Caller {
	c, _ := store.CallerFrom(ctx)
	return c
}
