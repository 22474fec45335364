package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
)

// Cluster RPC: HTTP/1.1 over the node-to-node TLS channel (protocol byte 'P'). Only nodes
// holding a certificate from the cluster CA reach these handlers, so a forwarded request's
// content (the caller's identity and address inside commands) is trusted.

const maxRPCBody = 4 << 30

type rpcError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

var rpcCodes = []struct {
	code string
	err  error
}{
	{"not_leader", ErrNotLeader},
	{"outcome_unknown", ErrOutcomeUnknown},
	{"timeout", ErrTimeout},
	{"shutdown", ErrShutdown},
	{"not_found", ErrNotFound},
}

func writeRPCError(w http.ResponseWriter, err error) {
	code := "internal"
	for _, c := range rpcCodes {
		if errors.Is(err, c.err) {
			code = c.code
			break
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusServiceUnavailable)
	_ = json.NewEncoder(w).Encode(rpcError{Code: code, Message: err.Error()})
}

func writeRPCJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

type joinRequest struct {
	ID     string `json:"id"`
	Addr   string `json:"addr"`
	Voter  bool   `json:"voter"`
	Gossip string `json:"gossip,omitempty"`
}

type joinResponse struct {
	Gossip []string `json:"gossip"`
}

type idRequest struct {
	ID string `json:"id"`
}

func (n *Node) rpcHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /rpc/apply", func(w http.ResponseWriter, r *http.Request) {
		cmd, err := io.ReadAll(io.LimitReader(r.Body, maxRPCBody))
		if err != nil {
			writeRPCError(w, err)
			return
		}
		if n.raft.State() != raft.Leader {
			writeRPCError(w, ErrNotLeader)
			return
		}
		resp, idx, err := n.batcher.submit(r.Context(), cmd)
		if err != nil {
			writeRPCError(w, err)
			return
		}
		body, err := n.cfg.Codec.MarshalResponse(resp)
		if err != nil {
			writeRPCError(w, err)
			return
		}
		w.Header().Set("X-Index", strconv.FormatUint(idx, 10))
		_, _ = w.Write(body)
	})
	mux.HandleFunc("POST /rpc/read-index", func(w http.ResponseWriter, r *http.Request) {
		if n.raft.State() != raft.Leader {
			writeRPCError(w, ErrNotLeader)
			return
		}
		idx, err := n.leaderReadIndex(r.Context())
		if err != nil {
			writeRPCError(w, err)
			return
		}
		writeRPCJSON(w, map[string]uint64{"index": idx})
	})
	mux.HandleFunc("GET /rpc/status", func(w http.ResponseWriter, _ *http.Request) {
		writeRPCJSON(w, n.Status())
	})
	mux.HandleFunc("POST /rpc/join", func(w http.ResponseWriter, r *http.Request) {
		var req joinRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
			writeRPCError(w, err)
			return
		}
		if err := n.addServer(req.ID, req.Addr, req.Voter); err != nil {
			writeRPCError(w, err)
			return
		}
		writeRPCJSON(w, joinResponse{Gossip: n.gossipAddrs()})
	})
	mux.HandleFunc("POST /rpc/remove", func(w http.ResponseWriter, r *http.Request) {
		var req idRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
			writeRPCError(w, err)
			return
		}
		if err := n.removeServer(req.ID); err != nil {
			writeRPCError(w, err)
			return
		}
		writeRPCJSON(w, map[string]bool{"ok": true})
	})
	mux.HandleFunc("POST /rpc/transfer", func(w http.ResponseWriter, r *http.Request) {
		var req idRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
			writeRPCError(w, err)
			return
		}
		if err := n.transferLeadership(req.ID); err != nil {
			writeRPCError(w, err)
			return
		}
		writeRPCJSON(w, map[string]bool{"ok": true})
	})
	mux.HandleFunc("POST /rpc/restore", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			writeRPCError(w, err)
			return
		}
		if err := n.restoreLocal(body); err != nil {
			writeRPCError(w, err)
			return
		}
		writeRPCJSON(w, map[string]bool{"ok": true})
	})
	return mux
}

// rpcClient calls other nodes' RPC handlers.
type rpcClient struct {
	http *http.Client
}

// dialFailed marks an error before anything was sent: the request certainly had no effect.
type dialFailed struct{ err error }

func (d *dialFailed) Error() string { return "dial: " + d.err.Error() }
func (d *dialFailed) Unwrap() error { return d.err }

func newRPCClient(d Dialer) *rpcClient {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			c, err := d.DialProto(ctx, addr, protoRPC)
			if err != nil {
				return nil, &dialFailed{err}
			}
			return c, nil
		},
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	return &rpcClient{http: &http.Client{Transport: tr}}
}

// call POSTs (or GETs when body is nil and get is set) to addr's RPC path and returns the
// response body. Errors: a dial failure is ErrNotLeader-safe (nothing was sent), any later
// transport failure is reported as sent-but-unknown via sent=true.
func (c *rpcClient) call(ctx context.Context, method, addr, path string, body []byte) (resp []byte, hdr http.Header, sent bool, err error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return nil, nil, false, err
	}
	r, err := c.http.Do(req)
	if err != nil {
		var df *dialFailed
		return nil, nil, !errors.As(err, &df), err
	}
	defer r.Body.Close()
	b, err := io.ReadAll(io.LimitReader(r.Body, maxRPCBody))
	if err != nil {
		return nil, nil, true, err
	}
	if r.StatusCode != http.StatusOK {
		var re rpcError
		if json.Unmarshal(b, &re) != nil {
			return nil, nil, true, fmt.Errorf("rpc %s: HTTP %d", path, r.StatusCode)
		}
		for _, rc := range rpcCodes {
			if rc.code == re.Code {
				return nil, nil, false, fmt.Errorf("%w: %s (from %s)", rc.err, re.Message, addr)
			}
		}
		return nil, nil, false, fmt.Errorf("rpc %s on %s: %s", path, addr, re.Message)
	}
	return b, r.Header, true, nil
}

// forwardApply sends a command to the leader at addr. A failure before the leader could have
// received it is ErrNotLeader (safe to retry); a failure after is ErrOutcomeUnknown.
func (n *Node) forwardApply(ctx context.Context, addr string, cmd []byte) (any, uint64, error) {
	n.forwardedApplies.Add(1)
	body, hdr, sent, err := n.rpc.call(ctx, http.MethodPost, addr, "/rpc/apply", cmd)
	if err != nil {
		switch {
		case errors.Is(err, ErrNotLeader), errors.Is(err, ErrTimeout), errors.Is(err, ErrOutcomeUnknown), errors.Is(err, ErrShutdown):
			if errors.Is(err, ErrShutdown) {
				return nil, 0, fmt.Errorf("%w: leader shutting down: %w", ErrNotLeader, err)
			}
			return nil, 0, err
		case !sent:
			return nil, 0, fmt.Errorf("%w: forwarding to %s: %w", ErrNotLeader, addr, err)
		}
		return nil, 0, fmt.Errorf("%w: forwarding to %s: %w", ErrOutcomeUnknown, addr, err)
	}
	resp, err := n.cfg.Codec.UnmarshalResponse(body)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
	}
	idx, _ := strconv.ParseUint(hdr.Get("X-Index"), 10, 64)
	return resp, idx, nil
}

func (c *rpcClient) readIndex(ctx context.Context, addr string) (uint64, error) {
	body, _, _, err := c.call(ctx, http.MethodPost, addr, "/rpc/read-index", nil)
	if err != nil {
		if errors.Is(err, ErrNotLeader) || errors.Is(err, ErrTimeout) {
			return 0, err
		}
		return 0, fmt.Errorf("%w: read index from %s: %w", ErrNotLeader, addr, err)
	}
	var out struct {
		Index uint64 `json:"index"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return 0, err
	}
	return out.Index, nil
}

func (c *rpcClient) status(ctx context.Context, addr string) (Status, error) {
	var st Status
	body, _, _, err := c.call(ctx, http.MethodGet, addr, "/rpc/status", nil)
	if err != nil {
		return st, err
	}
	err = json.Unmarshal(body, &st)
	return st, err
}

// postJSON sends a leader-only operation to addr.
func (c *rpcClient) postJSON(ctx context.Context, addr, path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, _, _, err = c.call(ctx, http.MethodPost, addr, path, b)
	return err
}
