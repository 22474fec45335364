package client

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/keyward/keyward/api/wire"
)

// maxDrainBytes is how much of an unread body is drained so the connection can be reused.
const maxDrainBytes = 64 << 10

// call is one API request.
type call struct {
	method   string
	endpoint string // "/v1/secrets", "/v1/versions"...
	path     string // secret path appended to endpoint, required unless noPath
	noPath   bool   // the endpoint takes no secret path (listing, health)
	query    url.Values
	body     any    // JSON-encoded when non-nil
	accept   string // Accept header; empty means application/json
	auth     authMode
	token    string // the token sent with authExplicit
}

// authMode says which credentials a call carries.
type authMode uint8

const (
	authAuto     authMode = iota // the client's token (WithAuth, else WithToken)
	authNone                     // none: logins
	authExplicit                 // call.token
)

// endpointURL returns the request URL of k on the preferred node.
func (c *Client) endpointURL(k call) (*url.URL, error) {
	return endpointURLFor(c.bases[c.pref.Load()], k)
}

// endpointURLFor returns the request URL of k on the node at base, escaping each path segment.
func endpointURLFor(base *url.URL, k call) (*url.URL, error) {
	u := *base
	u.Path += k.endpoint
	u.RawPath = base.EscapedPath() + k.endpoint
	if !k.noPath {
		esc, err := escapePath(k.path)
		if err != nil {
			return nil, err
		}
		u.Path += "/" + k.path
		u.RawPath += "/" + esc
	}
	u.RawQuery = k.query.Encode()
	return &u, nil
}

// escapePath escapes each segment of a secret path and keeps the '/' between them. The dot
// segments "." and ".." are percent-encoded so no router or proxy collapses them on the way.
func escapePath(p string) (string, error) {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		switch s {
		case "":
			return "", fmt.Errorf("%w: %q is empty or has an empty segment", ErrInvalidPath, p)
		case ".":
			segs[i] = "%2E"
		case "..":
			segs[i] = "%2E%2E"
		default:
			segs[i] = url.PathEscape(s)
		}
	}
	return strings.Join(segs, "/"), nil
}

// do sends k and decodes a 2xx JSON answer into out (when non-nil). A non-2xx answer is an
// *APIError. It returns the response headers and status.
func (c *Client) do(ctx context.Context, k call, out any) (http.Header, int, error) {
	h, status, body, err := c.send(ctx, k)
	if err != nil {
		return nil, 0, err
	}
	if status < 200 || status > 299 {
		return h, status, decodeError(status, h, body)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			return h, status, fmt.Errorf("%s %s: %w: %w", k.method, k.endpoint, ErrMalformedResponse, err)
		}
	}
	return h, status, nil
}

// tokenFor returns the token k carries ("" for none), logging in first when the client uses
// WithAuth and holds no valid token.
func (c *Client) tokenFor(ctx context.Context, k call) (string, error) {
	switch {
	case k.auth == authNone:
		return "", nil
	case k.auth == authExplicit:
		return k.token, nil
	case c.auth != nil:
		return c.auth.token(ctx, c)
	}
	return c.token, nil
}

// send performs k with the client's credentials (see sendAny). When the client logs in
// through an Auth and the server refuses its token (expired early, revoked), it logs in again
// once and repeats k: a 401 answer means k had no effect.
func (c *Client) send(ctx context.Context, k call) (http.Header, int, []byte, error) {
	tok, err := c.tokenFor(ctx, k)
	if err != nil {
		return nil, 0, nil, err
	}
	h, status, body, err := c.sendAny(ctx, k, tok)
	if err == nil && status == http.StatusUnauthorized && c.auth != nil && k.auth == authAuto &&
		decodeError(status, nil, body).Code == "unauthenticated" {
		c.auth.invalidate(tok)
		if tok, err = c.auth.token(ctx, c); err != nil {
			return nil, 0, nil, err
		}
		return c.sendAny(ctx, k, tok)
	}
	return h, status, body, err
}

// sendAny performs k on the preferred node, moving on to the next node when the attempt is
// safe to repeat elsewhere (see New), and returns the headers, status and body of the answer,
// whatever the status. A write sent to a follower asks to be redirected to the leader (see
// leaderRedirect), so the client learns which node leads and prefers it from then on.
func (c *Client) sendAny(ctx context.Context, k call, tok string) (http.Header, int, []byte, error) {
	start := int(c.pref.Load())
	var h http.Header
	var status int
	var body []byte
	var err error
	for i := range c.bases {
		n := (start + i) % len(c.bases)
		ask := c.askRedirect(k)
		h, status, body, err = c.sendTo(ctx, c.bases[n], k, tok, ask)
		if ask && err == nil && status == http.StatusTemporaryRedirect {
			n, h, status, body, err = c.followLeader(ctx, k, tok, n, h)
		}
		if ctx.Err() != nil || !c.tryNext(k.method, status, body, err) || i == len(c.bases)-1 {
			if err == nil && status < 500 && status != http.StatusTooManyRequests {
				c.pref.Store(int32(n))
			}
			return h, status, body, err
		}
	}
	return h, status, body, err
}

// askRedirect reports whether k, a write, asks a follower for a redirect to the leader: only
// with several nodes, and until a redirect named a node the client was not given.
func (c *Client) askRedirect(k call) bool {
	return len(c.bases) > 1 && !c.noRedirect.Load() && k.method != http.MethodGet && k.method != http.MethodHead
}

// followLeader handles a 307 from the node bases[n] to a write: the follower did not act on it.
// When the Location names one of the client's nodes, k is sent there (the leader); otherwise
// the client stops asking for redirects and sends k to bases[n] again, which forwards it to
// the leader itself. It returns the node that answered and its answer.
func (c *Client) followLeader(ctx context.Context, k call, tok string, n int, h http.Header) (int, http.Header, int, []byte, error) {
	if to := c.nodeOf(h.Get("Location")); to >= 0 && to != n {
		h2, status, body, err := c.sendTo(ctx, c.bases[to], k, tok, false)
		if err == nil {
			return to, h2, status, body, nil
		}
		if !c.tryNext(k.method, status, body, err) {
			return to, h2, status, body, err
		}
		// The named leader cannot be reached: let the follower forward instead.
	} else {
		c.noRedirect.Store(true)
	}
	h, status, body, err := c.sendTo(ctx, c.bases[n], k, tok, false)
	return n, h, status, body, err
}

// nodeOf returns the index of the node whose API a redirect location points into, or -1.
func (c *Client) nodeOf(location string) int {
	u, err := url.Parse(location)
	if err != nil {
		return -1
	}
	for i, b := range c.bases {
		if strings.EqualFold(u.Scheme, b.Scheme) && strings.EqualFold(u.Host, b.Host) &&
			strings.HasPrefix(u.EscapedPath(), b.EscapedPath()+"/") {
			return i
		}
	}
	return -1
}

// tryNext reports whether an attempt may be repeated on another node: always when nothing was
// sent or the node refused for lack of a leader; for reads also after any transport error,
// 5xx or 429.
func (c *Client) tryNext(method string, status int, body []byte, err error) bool {
	if len(c.bases) < 2 {
		return false
	}
	read := method == http.MethodGet || method == http.MethodHead
	if err != nil {
		var op *net.OpError
		return read || (errors.As(err, &op) && op.Op == "dial")
	}
	if status == http.StatusServiceUnavailable {
		if e := decodeError(status, nil, body); e.Code == "no_leader" {
			return true
		}
	}
	return read && (status >= 500 || status == http.StatusTooManyRequests)
}

// sendTo performs k on the node at base with token tok; redirect asks a follower to answer a
// write with a redirect to the leader instead of forwarding it.
func (c *Client) sendTo(ctx context.Context, base *url.URL, k call, tok string, redirect bool) (http.Header, int, []byte, error) {
	u, err := endpointURLFor(base, k)
	if err != nil {
		return nil, 0, nil, err
	}
	var rd io.Reader
	if k.body != nil {
		b, err := json.Marshal(k.body)
		if err != nil {
			return nil, 0, nil, fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, k.method, u.String(), rd)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("build request: %w", err)
	}
	req.URL = u // keep the exact escaping of RawPath
	req.Header.Set("Accept", cmp.Or(k.accept, "application/json"))
	req.Header.Set("User-Agent", "keyward-go-client")
	if k.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if redirect {
		req.Header.Set(wire.HeaderRedirect, "true")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("send request: %w", err)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrainBytes))
		_ = resp.Body.Close()
	}()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, 0, nil, fmt.Errorf("%s %s: read response: %w", k.method, u.Redacted(), err)
	}
	if len(body) > maxResponseBytes {
		return nil, 0, nil, fmt.Errorf("%s %s: %w", k.method, u.Redacted(), ErrResponseTooLarge)
	}
	return resp.Header, resp.StatusCode, body, nil
}

// decodeError turns a non-2xx answer into an *APIError.
func decodeError(status int, h http.Header, body []byte) *APIError {
	var er wire.ErrorResponse
	if json.Unmarshal(body, &er) == nil && er.Error.Code != "" {
		return &APIError{Status: status, Code: er.Error.Code, Message: er.Error.Message,
			CurrentVersion: er.Error.CurrentVersion}
	}
	msg := http.StatusText(status)
	if loc := h.Get("Location"); status >= 300 && status <= 399 && loc != "" {
		msg = "unexpected redirect to " + loc
	} else if snippet := bodySnippet(body); snippet != "" {
		msg = snippet
	}
	if msg == "" {
		msg = "unexpected answer"
	}
	return &APIError{Status: status, Code: fmt.Sprintf("http_%d", status), Message: msg}
}

// bodySnippet returns the start of a non-API error body as one printable line.
func bodySnippet(body []byte) string {
	const maxSnippet = 200
	if len(body) > maxSnippet {
		body = body[:maxSnippet]
	}
	if !utf8.Valid(body) {
		return ""
	}
	return strings.Join(strings.Fields(string(body)), " ")
}
