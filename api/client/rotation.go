package client

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/keyward/keyward/api/wire"
)

// SetRotation creates or replaces the rotation policy of path.
func (c *Client) SetRotation(ctx context.Context, path string, req wire.RotationPolicyRequest) (*wire.RotationResponse, error) {
	var out wire.RotationResponse
	if _, _, err := c.do(ctx, call{method: http.MethodPut, endpoint: "/v1/rotation", path: path, body: req}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Rotation returns the rotation policy of path and its newest rotation.
func (c *Client) Rotation(ctx context.Context, path string) (*wire.RotationResponse, error) {
	var out wire.RotationResponse
	if _, _, err := c.do(ctx, call{method: http.MethodGet, endpoint: "/v1/rotation", path: path}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RotationHistory returns the kept rotations of path, newest first.
func (c *Client) RotationHistory(ctx context.Context, path string) (*wire.RotationHistoryResponse, error) {
	var out wire.RotationHistoryResponse
	if _, _, err := c.do(ctx, call{method: http.MethodGet, endpoint: "/v1/rotation-history", path: path}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteRotation removes the rotation policy of path (refused while a rotation runs).
func (c *Client) DeleteRotation(ctx context.Context, path string) error {
	_, _, err := c.do(ctx, call{method: http.MethodDelete, endpoint: "/v1/rotation", path: path}, nil)
	return err
}

// RotateNow asks the leader to rotate path now. With wait > 0 the server waits up to that long
// for the rotation to end (Done in the answer).
func (c *Client) RotateNow(ctx context.Context, path string, wait time.Duration) (*wire.RotateNowResponse, error) {
	q := url.Values{}
	if wait > 0 {
		q.Set("wait", wait.String())
	}
	var out wire.RotateNowResponse
	if _, _, err := c.do(ctx, call{method: http.MethodPost, endpoint: "/v1/rotate", path: path, query: q}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
