// Package client is the Go client of keyward's HTTP API v1 described in docs/API.md.
package client

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// DefaultTimeout bounds each request made by the HTTP client New creates when WithHTTPClient is
// not given.
const DefaultTimeout = 30 * time.Second

// maxResponseBytes caps how much of a response body the client reads.
const maxResponseBytes = 2 << 20

// Sentinel errors of the client. API answers that are errors come back as *APIError instead.
var (
	// ErrInvalidAddr: the server address given to New is not an http(s) URL or host:port.
	ErrInvalidAddr = errors.New("invalid server address")
	// ErrInvalidPath: the secret path is empty or has an empty segment, which cannot travel in
	// a URL unchanged. Every other path rule is left to the server.
	ErrInvalidPath = errors.New("invalid path")
	// ErrAmbiguousSelector: a Selector sets both Version and State.
	ErrAmbiguousSelector = errors.New("selector sets both version and state")
	// ErrResponseTooLarge: the server answered with a body over 2 MiB.
	ErrResponseTooLarge = errors.New("response body too large")
	// ErrMalformedResponse: a 2xx answer whose body is not what the API promises.
	ErrMalformedResponse = errors.New("malformed response")
)

// Client talks to a keyward cluster through one or more of its nodes. It is safe for
// concurrent use.
type Client struct {
	base  *url.URL   // the first node
	bases []*url.URL // every node given, in order
	pref  atomic.Int32
	token string
	auth  *authState // set by WithAuth; nil: the fixed token
	hc    *http.Client
	// noRedirect: a redirect named a node the client was not given, so writes are left to
	// the server's forwarding.
	noRedirect atomic.Bool
}

// Option configures a Client.
type Option func(*Client)

// WithToken sends token as "Authorization: Bearer <token>" on every request; empty sends none.
func WithToken(token string) Option {
	return func(c *Client) { c.token = token }
}

// WithHTTPClient makes the Client use a copy of h. The copy never follows redirects: the API
// does not redirect, so a redirect answer is returned as an *APIError.
func WithHTTPClient(h *http.Client) Option {
	return func(c *Client) {
		if h != nil {
			c.hc = h
		}
	}
}

// MaxIdleConnsPerHost is how many idle keep-alive connections a transport made by NewTransport
// keeps per server, enough for hundreds of concurrent callers sharing one Client.
const MaxIdleConnsPerHost = 256

// NewTransport returns an HTTP transport with Go's default dialer, proxy and timeout settings,
// the TLS configuration cfg (nil: Go's defaults, with the system roots) and keep-alive pools
// sized for many concurrent requests to one server.
func NewTransport(cfg *tls.Config) *http.Transport {
	var tr *http.Transport
	if dt, ok := http.DefaultTransport.(*http.Transport); ok {
		tr = dt.Clone()
	} else {
		tr = &http.Transport{Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true}
	}
	if cfg != nil {
		tr.TLSClientConfig = cfg.Clone()
	}
	tr.MaxIdleConns = 4 * MaxIdleConnsPerHost
	tr.MaxIdleConnsPerHost = MaxIdleConnsPerHost
	return tr
}

// WithTLSConfig makes the Client use a transport from NewTransport(cfg), keeping the request
// timeout of the HTTP client configured so far (DefaultTimeout, or the one given to an earlier
// WithHTTPClient). The caller's http.Client is never modified, and redirects are still not
// followed.
func WithTLSConfig(cfg *tls.Config) Option {
	return func(c *Client) {
		hc := *c.hc
		hc.Transport = NewTransport(cfg)
		c.hc = &hc
	}
}

// New returns a Client for the server at addr, such as "http://127.0.0.1:8200",
// "https://keyward.example:8200" or "127.0.0.1:8200" (taken as http). addr may carry a path
// prefix when the API is served below one.
//
// addr may list several nodes separated by commas: a request that cannot reach one node, or
// that a node refuses without acting on it (no leader), moves on to the next, and the client
// keeps using the node that answered. A write is only retried elsewhere when it certainly had
// no effect (the connection was refused, or the node answered no_leader); reads are retried on
// any transport failure, 5xx or 429.
func New(addr string, opts ...Option) (*Client, error) {
	var bases []*url.URL
	for _, a := range strings.Split(addr, ",") {
		base, err := parseAddr(a)
		if err != nil {
			return nil, err
		}
		bases = append(bases, base)
	}
	c := &Client{base: bases[0], bases: bases, hc: &http.Client{Timeout: DefaultTimeout}}
	for _, o := range opts {
		o(c)
	}
	hc := *c.hc
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.hc = &hc
	return c, nil
}

// parseAddr turns addr into the base URL of the API.
func parseAddr(addr string) (*url.URL, error) {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return nil, fmt.Errorf("%w: empty", ErrInvalidAddr)
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidAddr, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("%w: scheme %q is not http or https", ErrInvalidAddr, u.Scheme)
	case u.Host == "":
		return nil, fmt.Errorf("%w: %q has no host", ErrInvalidAddr, addr)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("%w: %q must not carry user info, query or fragment", ErrInvalidAddr, addr)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = strings.TrimSuffix(u.RawPath, "/")
	u.ForceQuery = false
	return u, nil
}

// PreferredNode returns the base URL of the node the client sends its next request to: the
// last one that answered, or the leader a write was redirected to.
func (c *Client) PreferredNode() string {
	return c.bases[c.pref.Load()].String()
}
