package client

import (
	"context"
	"fmt"
	"net/http"
)

// Metrics returns the body of the node's GET /metrics answer: Prometheus metrics in the text
// exposition format. A non-2xx answer is an *APIError.
func (c *Client) Metrics(ctx context.Context) ([]byte, error) {
	k := call{method: http.MethodGet, endpoint: "/metrics", noPath: true, accept: "text/plain; version=0.0.4"}
	h, status, body, err := c.send(ctx, k)
	if err != nil {
		return nil, err
	}
	if status < 200 || status > 299 {
		return nil, fmt.Errorf("GET /metrics: %w", decodeError(status, h, body))
	}
	return body, nil
}
