// Package cluster owns Raft for a keyward node: the log and stable stores, snapshots, the
// transport, bootstrap, and proposing commands.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// Errors returned by Apply, translated from Raft's own.
var (
	// ErrNotLeader: this node is not the leader (or there is none); nothing was proposed.
	ErrNotLeader = errors.New("not the leader")
	// ErrOutcomeUnknown: leadership was lost after the command was proposed; it may or may not
	// commit. Never retry a non-idempotent write blindly after this.
	ErrOutcomeUnknown = errors.New("outcome unknown: leadership lost while committing")
	// ErrTimeout: the command could not be enqueued in time; nothing was proposed.
	ErrTimeout = errors.New("timed out proposing")
	// ErrShutdown: the node is shutting down.
	ErrShutdown = errors.New("node is shutting down")
)

// Config describes one node.
type Config struct {
	NodeID    string
	DataDir   string
	RaftAddr  string // address to bind for Raft traffic, host:port
	Advertise string // address other nodes use; defaults to the bound address
	// Bootstrap makes a node without existing state form a one-node cluster of itself.
	Bootstrap bool
	FSM       raft.FSM
	// Noop is an encoded FSM command that changes nothing but the applied index; the leader
	// commits it at the start of each term (see reads.go).
	Noop []byte
	Log  *slog.Logger

	SnapshotInterval  time.Duration // how often Raft checks whether to snapshot; default 30s
	SnapshotThreshold uint64        // log entries between snapshots; default 8192
	TrailingLogs      uint64        // entries kept after a snapshot; default 10240
}

// Node is a running Raft member.
type Node struct {
	cfg       Config
	raft      *raft.Raft
	transport *raft.NetworkTransport
	logs      *raftboltdb.BoltStore
	log       *slog.Logger
	verifier  *leaderVerifier

	// readyMu guards readyTerm (the last term whose no-op this node applied as leader) and
	// readyCh, closed and replaced when readyTerm changes.
	readyMu   sync.Mutex
	readyTerm uint64
	readyCh   chan struct{}

	shutdownCh chan struct{}
	watchDone  chan struct{}
}

// Open starts Raft with Bolt log and stable stores and a file snapshot store under DataDir.
func Open(cfg Config) (*Node, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.NodeID == "" || cfg.DataDir == "" || cfg.RaftAddr == "" || cfg.FSM == nil || cfg.Noop == nil {
		return nil, errors.New("cluster: node id, data dir, raft address, FSM and no-op command are required")
	}
	raftDir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(raftDir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: create data dir: %w", err)
	}
	hl := newHCLog(cfg.Log, hclog.Info)

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hl.Named("raft")
	rc.HeartbeatTimeout = 500 * time.Millisecond
	rc.ElectionTimeout = 500 * time.Millisecond
	rc.LeaderLeaseTimeout = 250 * time.Millisecond
	rc.SnapshotInterval = orDuration(cfg.SnapshotInterval, 30*time.Second)
	rc.SnapshotThreshold = orUint(cfg.SnapshotThreshold, 8192)
	rc.TrailingLogs = orUint(cfg.TrailingLogs, 10240)

	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(raftDir, "raft.db")})
	if err != nil {
		return nil, fmt.Errorf("cluster: open raft store: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(raftDir, 3, hl.Named("snapshot"))
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("cluster: open snapshot store: %w", err)
	}
	var adv net.Addr
	if cfg.Advertise != "" {
		if adv, err = net.ResolveTCPAddr("tcp", cfg.Advertise); err != nil {
			store.Close()
			return nil, fmt.Errorf("cluster: advertise address: %w", err)
		}
	}
	trans, err := raft.NewTCPTransportWithLogger(cfg.RaftAddr, adv, 3, 10*time.Second, hl.Named("transport"))
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("cluster: raft transport: %w", err)
	}

	if cfg.Bootstrap {
		has, err := raft.HasExistingState(store, store, snaps)
		if err != nil {
			trans.Close()
			store.Close()
			return nil, fmt.Errorf("cluster: inspect state: %w", err)
		}
		if !has {
			conf := raft.Configuration{Servers: []raft.Server{{
				ID: rc.LocalID, Address: trans.LocalAddr(), Suffrage: raft.Voter,
			}}}
			if err := raft.BootstrapCluster(rc, store, store, snaps, trans, conf); err != nil {
				trans.Close()
				store.Close()
				return nil, fmt.Errorf("cluster: bootstrap: %w", err)
			}
			cfg.Log.Info("bootstrapped a new cluster", "node_id", cfg.NodeID, "raft_addr", string(trans.LocalAddr()))
		}
	}

	r, err := raft.NewRaft(rc, cfg.FSM, store, store, snaps, trans)
	if err != nil {
		trans.Close()
		store.Close()
		return nil, fmt.Errorf("cluster: start raft: %w", err)
	}
	n := &Node{cfg: cfg, raft: r, transport: trans, logs: store, log: cfg.Log,
		readyCh: make(chan struct{}), shutdownCh: make(chan struct{}), watchDone: make(chan struct{})}
	n.verifier = &leaderVerifier{check: func() error { return translate(r.VerifyLeader().Error()) }}
	go n.watchLeadership()
	return n, nil
}

// Apply proposes a command and waits until it is committed and applied locally, returning the
// FSM's response and the entry's index. It must be called on the leader.
func (n *Node) Apply(ctx context.Context, cmd []byte) (any, uint64, error) {
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
		if timeout <= 0 {
			return nil, 0, fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
		}
	}
	f := n.raft.Apply(cmd, timeout)
	if err := f.Error(); err != nil {
		return nil, 0, translate(err)
	}
	return f.Response(), f.Index(), nil
}

func translate(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrAbortedByRestore):
		return fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %w", ErrShutdown, err)
	}
	return err
}

// WaitForLeader blocks until the cluster has a leader or ctx ends.
func (n *Node) WaitForLeader(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if addr, _ := n.raft.LeaderWithID(); addr != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrNotLeader, ctx.Err())
		case <-t.C:
		}
	}
}

// Snapshot forces a Raft snapshot now.
func (n *Node) Snapshot() error {
	if err := n.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("cluster: snapshot: %w", err)
	}
	return nil
}

// Status is what a node knows about Raft right now.
type Status struct {
	NodeID       string
	State        string // Leader, Follower, Candidate, Shutdown
	LeaderID     string
	LeaderAddr   string
	Term         uint64
	CommitIndex  uint64
	AppliedIndex uint64
	LastContact  time.Duration // since the last contact with the leader; 0 on the leader
}

// Status reports the node's Raft state.
func (n *Node) Status() Status {
	addr, id := n.raft.LeaderWithID()
	st := Status{
		NodeID:       n.cfg.NodeID,
		State:        n.raft.State().String(),
		LeaderID:     string(id),
		LeaderAddr:   string(addr),
		Term:         n.raft.CurrentTerm(),
		CommitIndex:  n.raft.CommitIndex(),
		AppliedIndex: n.raft.AppliedIndex(),
	}
	if n.raft.State() != raft.Leader {
		if lc := n.raft.LastContact(); !lc.IsZero() {
			st.LastContact = time.Since(lc)
		}
	}
	return st
}

// Close shuts Raft down and releases the stores.
func (n *Node) Close() error {
	close(n.shutdownCh)
	<-n.watchDone
	err := n.raft.Shutdown().Error()
	if cerr := n.transport.Close(); err == nil {
		err = cerr
	}
	if cerr := n.logs.Close(); err == nil {
		err = cerr
	}
	return err
}

func orDuration(v, d time.Duration) time.Duration {
	if v == 0 {
		return d
	}
	return v
}

func orUint(v, d uint64) uint64 {
	if v == 0 {
		return d
	}
	return v
}
