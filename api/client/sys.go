package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// MemberMeta is what a node tells the others over gossip (cluster.MemberMeta).
type MemberMeta struct {
	RaftAddr string `json:"raft"`
	HTTPAddr string `json:"http,omitempty"`
	Role     string `json:"role"` // "voter" or "replica"
	Expect   int    `json:"expect,omitempty"`
}

// Member is one node in the gossip view of the node asked (cluster.Member).
type Member struct {
	ID         string     `json:"id"`
	GossipAddr string     `json:"gossip_addr"`
	Status     string     `json:"status"` // alive, suspect, dead, left
	Meta       MemberMeta `json:"meta"`
	Since      time.Time  `json:"since"`
}

// Peer is one server of the Raft configuration with what it reports about itself
// (cluster.Peer). State, LastContact, AppliedIndex and Term are only meaningful when
// Reachable. LastContact is the time since the peer last heard from the leader: 0 on the
// leader, negative when it never has.
type Peer struct {
	ID           string        `json:"id"`
	Address      string        `json:"address"`
	Voter        bool          `json:"voter"`
	Leader       bool          `json:"leader"`
	Reachable    bool          `json:"reachable"`
	State        string        `json:"state,omitempty"`
	LastContact  time.Duration `json:"last_contact_ns"`
	AppliedIndex uint64        `json:"applied_index"`
	Term         uint64        `json:"term"`
}

// ClusterStatus summarises the health of the voters (cluster.ClusterStatus).
type ClusterStatus struct {
	Healthy          bool   `json:"healthy"`
	Leader           string `json:"leader"`
	Voters           int    `json:"voters"`
	HealthyVoters    int    `json:"healthy_voters"`
	Replicas         int    `json:"replicas"`
	Quorum           int    `json:"quorum"`
	FailureTolerance int    `json:"failure_tolerance"`
}

// Members returns the gossip view of the node the client talks to, ordered by id; empty when
// that node runs without gossip.
func (c *Client) Members(ctx context.Context) ([]Member, error) {
	var out struct {
		Members []Member `json:"members"`
	}
	if _, _, err := c.do(ctx, call{method: http.MethodGet, endpoint: "/v1/sys/cluster/members", noPath: true}, &out); err != nil {
		return nil, err
	}
	return out.Members, nil
}

// Peers returns the Raft configuration as seen by the node the client talks to, each server
// with the status it reports, ordered by id.
func (c *Client) Peers(ctx context.Context) ([]Peer, error) {
	var out struct {
		Peers []Peer `json:"peers"`
	}
	if _, _, err := c.do(ctx, call{method: http.MethodGet, endpoint: "/v1/sys/cluster/peers", noPath: true}, &out); err != nil {
		return nil, err
	}
	return out.Peers, nil
}

// ClusterStatus reports whether a quorum of voters is healthy and how many more may fail.
func (c *Client) ClusterStatus(ctx context.Context) (*ClusterStatus, error) {
	var out ClusterStatus
	if _, _, err := c.do(ctx, call{method: http.MethodGet, endpoint: "/v1/sys/cluster/status", noPath: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

type addressBody struct {
	Address string `json:"address"`
}

type nodeBody struct {
	NodeID string `json:"node_id"`
}

// JoinCluster tells the node the client talks to to join the cluster of the member whose
// cluster (Raft) address, host:port, is address.
func (c *Client) JoinCluster(ctx context.Context, address string) error {
	k := call{method: http.MethodPost, endpoint: "/v1/sys/cluster/join", noPath: true, body: addressBody{Address: address}}
	_, _, err := c.do(ctx, k, nil)
	return err
}

// RemovePeer takes the server nodeID out of the Raft configuration.
func (c *Client) RemovePeer(ctx context.Context, nodeID string) error {
	k := call{method: http.MethodPost, endpoint: "/v1/sys/cluster/remove", noPath: true, body: nodeBody{NodeID: nodeID}}
	_, _, err := c.do(ctx, k, nil)
	return err
}

// TransferLeader hands leadership to the voter nodeID, or, when nodeID is empty, to the most
// up-to-date voter.
func (c *Client) TransferLeader(ctx context.Context, nodeID string) error {
	k := call{method: http.MethodPost, endpoint: "/v1/sys/cluster/transfer-leader", noPath: true}
	if nodeID != "" {
		k.body = nodeBody{NodeID: nodeID}
	}
	_, _, err := c.do(ctx, k, nil)
	return err
}

// ForceRaftSnapshot makes the node the client talks to take a local Raft snapshot now.
func (c *Client) ForceRaftSnapshot(ctx context.Context) error {
	_, _, err := c.do(ctx, call{method: http.MethodPost, endpoint: "/v1/sys/raft/snapshot", noPath: true}, nil)
	return err
}

// SnapshotSave streams a consistent snapshot of the replicated state (ciphertext only) into
// w. The body is not size-capped and, like SnapshotRestore, the call is not bound by the
// client's request timeout: bound it with ctx. The snapshot ends with a checksum trailer, so a
// stream cut short is refused by a restore rather than restored in part.
func (c *Client) SnapshotSave(ctx context.Context, w io.Writer) error {
	resp, err := c.stream(ctx, http.MethodGet, "/v1/sys/snapshot", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return streamError(resp)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("GET /v1/sys/snapshot: %w", err)
	}
	return nil
}

// SnapshotRestore sends a snapshot written by SnapshotSave, as read from r, and replaces the
// whole replicated state of the cluster with it. It reads r to the end but never closes it.
// It is not bound by the client's request timeout: bound it with ctx.
func (c *Client) SnapshotRestore(ctx context.Context, r io.Reader) error {
	if _, ok := r.(io.Closer); ok {
		r = struct{ io.Reader }{r} // r is the caller's to close, not the transport's
	}
	resp, err := c.stream(ctx, http.MethodPut, "/v1/sys/snapshot", r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return fmt.Errorf("PUT /v1/sys/snapshot: read response: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeError(resp.StatusCode, resp.Header, body)
	}
	return nil
}

// stream sends a request with an optional raw body and returns the open response. It uses the
// client's transport without its overall timeout, so a large snapshot is bounded by ctx only.
func (c *Client) stream(ctx context.Context, method, endpoint string, body io.Reader) (*http.Response, error) {
	u, err := c.endpointURL(call{endpoint: endpoint, noPath: true})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.URL = u
	req.Header.Set("Accept", "application/octet-stream, application/json")
	req.Header.Set("User-Agent", "keyward-go-client")
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	tok, err := c.tokenFor(ctx, call{})
	if err != nil {
		return nil, err
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	hc := *c.hc
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("send request: %w", err)
	}
	return resp, nil
}

// streamError turns a non-200 answer to a streaming request into an *APIError.
func streamError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	status := resp.StatusCode
	if status >= 200 && status <= 299 {
		// A 2xx other than 200 is not the snapshot the API promises.
		return fmt.Errorf("GET /v1/sys/snapshot: %w: HTTP %d", ErrMalformedResponse, status)
	}
	return decodeError(status, resp.Header, body)
}
