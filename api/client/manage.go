package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/keyward/keyward/api/wire"
)

// ListOptions page a listing. Limit 0 takes the server default; After is the "next" cursor of
// the previous page.
type ListOptions struct {
	Limit int
	After string
}

// List returns one page of the secrets whose path starts with prefix, ordered by path.
func (c *Client) List(ctx context.Context, prefix string, o ListOptions) (*wire.ListResponse, error) {
	q := url.Values{}
	if prefix != "" {
		q.Set("prefix", prefix)
	}
	if o.Limit != 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.After != "" {
		q.Set("after", o.After)
	}
	var out wire.ListResponse
	if _, _, err := c.do(ctx, call{method: http.MethodGet, endpoint: "/v1/secrets", noPath: true, query: q}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Versions returns the metadata of every version of path, newest first.
func (c *Client) Versions(ctx context.Context, path string) (*wire.VersionsResponse, error) {
	var out wire.VersionsResponse
	if _, _, err := c.do(ctx, call{method: http.MethodGet, endpoint: "/v1/versions", path: path}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Destroy crypto-shreds the given versions of path.
func (c *Client) Destroy(ctx context.Context, path string, versions []uint64) (*wire.DestroyResponse, error) {
	if versions == nil {
		versions = []uint64{}
	}
	var out wire.DestroyResponse
	k := call{method: http.MethodPost, endpoint: "/v1/destroy", path: path, body: wire.DestroyRequest{Versions: versions}}
	if _, _, err := c.do(ctx, k, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Delete soft-deletes path, or removes it and every version for good when purge is true.
func (c *Client) Delete(ctx context.Context, path string, purge bool) (*wire.DeleteResponse, error) {
	q := url.Values{}
	if purge {
		q.Set("purge", "true")
	}
	var out wire.DeleteResponse
	if _, _, err := c.do(ctx, call{method: http.MethodDelete, endpoint: "/v1/secrets", path: path, query: q}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Restore undoes a soft delete of path.
func (c *Client) Restore(ctx context.Context, path string) (*wire.RestoreResponse, error) {
	var out wire.RestoreResponse
	if _, _, err := c.do(ctx, call{method: http.MethodPost, endpoint: "/v1/restore", path: path}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Health asks the node for its Raft state and returns the answer with its HTTP status. A node
// without a leader answers 503 with a health body: Health returns it with a nil error, so check
// the status (or HealthResponse.Error). Any other failure is an error.
func (c *Client) Health(ctx context.Context) (*wire.HealthResponse, int, error) {
	h, status, body, err := c.send(ctx, call{method: http.MethodGet, endpoint: "/v1/sys/health", noPath: true})
	if err != nil {
		return nil, 0, err
	}
	var out wire.HealthResponse
	decErr := json.Unmarshal(body, &out)
	switch {
	case status >= 200 && status <= 299 && decErr != nil:
		return nil, status, fmt.Errorf("GET /v1/sys/health: %w: %w", ErrMalformedResponse, decErr)
	case status >= 200 && status <= 299:
		return &out, status, nil
	case status == http.StatusServiceUnavailable && decErr == nil && (out.NodeID != "" || out.State != ""):
		return &out, status, nil
	}
	return nil, status, decodeError(status, h, body)
}
