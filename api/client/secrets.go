package client

import (
	"context"
	"encoding/base64"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/keyward/keyward/api/wire"
)

// PutOptions are the optional fields of a write.
type PutOptions struct {
	// CAS, when set, is the expected CURRENT version; 0 means the secret must not exist yet.
	CAS *uint64
	// Description, when set, replaces the secret's description.
	Description *string
}

// Selector picks the version to read. The zero value picks the CURRENT version; at most one of
// Version and State may be set.
type Selector struct {
	Version uint64
	State   string // "CURRENT", "PREVIOUS" or "DEPRECATED"
}

// Secret is a read version: the API's answer, its value decoded and what the answering node
// said about its state in the response headers.
type Secret struct {
	wire.SecretResponse
	Value []byte `json:"-"`
	// Index is the Raft index the answering node had applied (X-Keyward-Index).
	Index uint64 `json:"-"`
	// LastContact is how long ago the answering node last heard from the leader: 0 on the
	// leader (or when the server does not send X-Keyward-Last-Contact), negative when the
	// node never heard from one.
	LastContact time.Duration `json:"-"`
	// Staleness is how old the answering node's state may be (X-Keyward-Staleness, what
	// max_stale checks): negative when the node did not know, 0 when the header is absent.
	Staleness time.Duration `json:"-"`
	// KnownLeader reports whether the answering node knew a leader (X-Keyward-Known-Leader);
	// false when the server does not send the header.
	KnownLeader bool `json:"-"`
	// Consistency is how the read was served: "linearizable" or "stale"
	// (X-Keyward-Consistency); empty when the server does not send the header.
	Consistency string `json:"-"`
}

// ReadOptions choose the consistency of a read. The zero value asks for a linearizable read.
type ReadOptions struct {
	// Stale lets the node answer from its local state without confirming leadership, so any
	// node can answer, possibly with data that is not the newest.
	Stale bool
	// MaxStale, when positive, allows a stale read (it implies Stale) but makes the node
	// refuse with 503 too_stale when its last contact with the leader is older than MaxStale.
	MaxStale time.Duration
	// MinIndex, when non-zero, makes the node wait (for a bounded time) until it has applied
	// this Raft index before answering; pass the Index of an earlier answer to read your
	// writes from any node.
	MinIndex uint64
}

// addTo adds the query parameters of o to q.
func (o ReadOptions) addTo(q url.Values) {
	switch {
	case o.MaxStale > 0:
		q.Set("max_stale", o.MaxStale.String())
	case o.Stale:
		q.Set("stale", "true")
	}
	if o.MinIndex != 0 {
		q.Set("min_index", strconv.FormatUint(o.MinIndex, 10))
	}
}

// Put writes value as a new version of path. The value travels as "value" when it is valid
// UTF-8 and as "value_base64" otherwise.
func (c *Client) Put(ctx context.Context, path string, value []byte, o PutOptions) (*wire.WriteResponse, error) {
	req := wire.PutRequest{CAS: o.CAS, Description: o.Description}
	if utf8.Valid(value) {
		s := string(value)
		req.Value = &s
	} else {
		s := base64.StdEncoding.EncodeToString(value)
		req.ValueBase64 = &s
	}
	var out wire.WriteResponse
	if _, _, err := c.do(ctx, call{method: http.MethodPut, endpoint: "/v1/secrets", path: path, body: req}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Get reads the version of path that sel picks with a linearizable read. It is GetWith with
// zero ReadOptions.
func (c *Client) Get(ctx context.Context, path string, sel Selector) (*Secret, error) {
	return c.GetWith(ctx, path, sel, ReadOptions{})
}

// GetWith reads the version of path that sel picks with the consistency ro asks for.
func (c *Client) GetWith(ctx context.Context, path string, sel Selector, ro ReadOptions) (*Secret, error) {
	q := url.Values{}
	switch {
	case sel.Version != 0 && sel.State != "":
		return nil, ErrAmbiguousSelector
	case sel.Version != 0:
		q.Set("version", strconv.FormatUint(sel.Version, 10))
	case sel.State != "":
		q.Set("state", sel.State)
	}
	ro.addTo(q)
	var s Secret
	h, _, err := c.do(ctx, call{method: http.MethodGet, endpoint: "/v1/secrets", path: path, query: q}, &s.SecretResponse)
	if err != nil {
		return nil, err
	}
	switch {
	case s.SecretResponse.Value != nil:
		s.Value = []byte(*s.SecretResponse.Value)
	case s.ValueBase64 != nil:
		v, err := base64.StdEncoding.DecodeString(*s.ValueBase64)
		if err != nil {
			return nil, fmt.Errorf("GET %s: %w: value_base64: %w", path, ErrMalformedResponse, err)
		}
		s.Value = v
	default:
		return nil, fmt.Errorf("GET %s: %w: no value", path, ErrMalformedResponse)
	}
	s.Index, _ = strconv.ParseUint(h.Get(wire.HeaderIndex), 10, 64)
	s.LastContact = headerMillis(h.Get(wire.HeaderLastContact))
	s.Staleness = headerMillis(h.Get(wire.HeaderStaleness))
	s.KnownLeader, _ = strconv.ParseBool(h.Get(wire.HeaderKnownLeader))
	s.Consistency = h.Get(wire.HeaderConsistency)
	return &s, nil
}

// headerMillis reads a header of milliseconds as a duration; 0 if absent or malformed.
func headerMillis(v string) time.Duration {
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0
	}
	const maxMS = math.MaxInt64 / int64(time.Millisecond)
	return time.Duration(min(max(ms, -maxMS), maxMS)) * time.Millisecond
}
