package client

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
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

// Secret is a read version: the API's answer, its value decoded and the Raft index the
// answering node had applied.
type Secret struct {
	wire.SecretResponse
	Value []byte `json:"-"`
	Index uint64 `json:"-"`
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

// Get reads the version of path that sel picks.
func (c *Client) Get(ctx context.Context, path string, sel Selector) (*Secret, error) {
	q := url.Values{}
	switch {
	case sel.Version != 0 && sel.State != "":
		return nil, ErrAmbiguousSelector
	case sel.Version != 0:
		q.Set("version", strconv.FormatUint(sel.Version, 10))
	case sel.State != "":
		q.Set("state", sel.State)
	}
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
	return &s, nil
}
