// Package cluster owns Raft for a keyward node: the log and stable stores, snapshots, the
// TLS transport, membership, bootstrap, forwarding to the leader and linearizable read indexes.
package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// Errors returned by Node methods, translated from Raft's own.
var (
	// ErrNotLeader: no leader is known, or the leader changed before the command was accepted;
	// nothing was proposed.
	ErrNotLeader = errors.New("no leader")
	// ErrOutcomeUnknown: the command may or may not commit (leadership lost while committing,
	// or the connection to the leader broke after the command was sent). Never retry a
	// non-idempotent write blindly after this.
	ErrOutcomeUnknown = errors.New("outcome unknown")
	// ErrTimeout: the command could not be enqueued in time; nothing was proposed.
	ErrTimeout = errors.New("timed out")
	// ErrShutdown: the node is shutting down.
	ErrShutdown = errors.New("node is shutting down")
	// ErrNotFound: no such server in the cluster configuration.
	ErrNotFound = errors.New("no such server")
)

// Codec is what the cluster needs to know about FSM commands and responses: how to frame
// many commands as one entry, split the response, and move a response across the network.
// fsm.Codec implements it.
type Codec interface {
	EncodeBatch(cmds [][]byte) []byte
	SplitResponse(resp any, n int) []any
	MarshalResponse(resp any) ([]byte, error)
	UnmarshalResponse(b []byte) (any, error)
}

// Config describes one node.
type Config struct {
	NodeID   string
	DataDir  string
	RaftAddr string // address to bind for cluster traffic (Raft and RPC), host:port
	// Advertise is the cluster address other nodes use; defaults to RaftAddr (which then must
	// not be a wildcard address).
	Advertise string
	// HTTPAddr is this node's advertised API URL, shared over gossip for redirects.
	HTTPAddr string

	// ServerTLS and ClientTLS secure node-to-node traffic (mutual TLS against the cluster CA).
	// Both nil means plain TCP (dev mode only).
	ServerTLS, ClientTLS *tls.Config

	// Bootstrap makes a node without existing state form a one-node cluster of itself.
	Bootstrap bool
	// BootstrapExpect > 0: wait until that many voters see each other over gossip, then form
	// the cluster from exactly those.
	BootstrapExpect int
	// ReadReplica joins as a non-voter.
	ReadReplica bool
	// Gossip (hashicorp/memberlist): bind address, addresses to join, and the encryption key
	// (16, 24 or 32 bytes; nil only in dev mode). Empty GossipAddr disables gossip.
	GossipAddr string
	Join       []string
	GossipKey  []byte
	// DeadServerCleanup > 0 removes a voter dead for longer than that, if at least three
	// voters remain.
	DeadServerCleanup time.Duration

	FSM   raft.FSM
	Codec Codec
	// Noop is an encoded FSM command that changes nothing but the applied index; the leader
	// commits it at the start of each term (see reads.go).
	Noop []byte
	Log  *slog.Logger

	SnapshotInterval  time.Duration // how often Raft checks whether to snapshot; default 30s
	SnapshotThreshold uint64        // log entries between snapshots; default 8192
	TrailingLogs      uint64        // entries kept after a snapshot; default 10240
	// MaxBatch is the most commands the leader puts in one Raft entry; default 256.
	MaxBatch int
}

// Node is a running Raft member.
type Node struct {
	cfg       Config
	raft      *raft.Raft
	transport *raft.NetworkTransport
	mux       *muxListener
	logs      *raftboltdb.BoltStore
	snaps     raft.SnapshotStore
	log       *slog.Logger
	dialer    Dialer
	rpc       *rpcClient
	rpcSrv    *http.Server
	batcher   *batcher
	members   *membership

	forwardedApplies atomic.Uint64
	forwardedReads   atomic.Uint64

	verifier  *rounds[struct{}] // leader: shared VerifyLeader calls
	readIndex *rounds[uint64]   // follower: shared read-index RPCs to the leader
	fresh     freshness         // how old the local state may be (fresh.go)

	// readyMu guards readyTerm (the last term whose no-op this node applied as leader) and
	// readyCh, closed and replaced when readyTerm changes.
	readyMu   sync.Mutex
	readyTerm uint64
	readyCh   chan struct{}

	shutdownCh chan struct{}
	wg         sync.WaitGroup
	closeOnce  sync.Once
}

// Open starts Raft with Bolt log and stable stores and a file snapshot store under DataDir,
// the cluster listener, the RPC server and (when configured) gossip.
func Open(cfg Config) (*Node, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.NodeID == "" || cfg.DataDir == "" || cfg.RaftAddr == "" || cfg.FSM == nil || cfg.Noop == nil || cfg.Codec == nil {
		return nil, errors.New("cluster: node id, data dir, raft address, FSM, codec and no-op command are required")
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 256
	}
	raftDir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(raftDir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: create data dir: %w", err)
	}
	hl := newHCLog(cfg.Log, hclog.Info)

	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(raftDir, "raft.db")})
	if err != nil {
		return nil, fmt.Errorf("cluster: open raft store: %w", err)
	}
	n := &Node{cfg: cfg, logs: store, log: cfg.Log, dialer: Dialer{tlsConf: cfg.ClientTLS},
		readyCh: make(chan struct{}), shutdownCh: make(chan struct{})}
	if err := n.open(hl, raftDir); err != nil {
		n.closeResources()
		return nil, err
	}
	return n, nil
}

// logCacheEntries is how many recent Raft entries stay cached in memory.
const logCacheEntries = 64

func (n *Node) open(hl hclog.Logger, raftDir string) error {
	cfg := n.cfg
	snaps, err := raft.NewFileSnapshotStoreWithLogger(raftDir, 3, hl.Named("snapshot"))
	if err != nil {
		return fmt.Errorf("cluster: open snapshot store: %w", err)
	}
	n.snaps = snaps

	ln, err := net.Listen("tcp", cfg.RaftAddr)
	if err != nil {
		return fmt.Errorf("cluster: listen %s: %w", cfg.RaftAddr, err)
	}
	adv := cfg.Advertise
	if adv == "" {
		adv = ln.Addr().String()
	}
	advAddr, err := net.ResolveTCPAddr("tcp", adv)
	if err != nil {
		ln.Close()
		return fmt.Errorf("cluster: advertise address: %w", err)
	}
	if advAddr.IP.IsUnspecified() {
		ln.Close()
		return fmt.Errorf("cluster: advertise address %s is not routable; set it explicitly", adv)
	}
	n.cfg.Advertise = advAddr.String()
	if advAddr.IP.IsLoopback() {
		n.dialer.local = &net.TCPAddr{IP: advAddr.IP}
	}
	n.mux = newMuxListener(ln, cfg.ServerTLS, n.log)
	layer := &raftLayer{subListener: n.mux.raft, dialer: n.dialer, advertise: advAddr}
	n.transport = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: layer, MaxPool: 5, Timeout: 10 * time.Second, Logger: hl.Named("transport"),
	})

	rc := raftConfig(n.cfg, hl)
	if cfg.Bootstrap {
		if err := n.bootstrapSelf(rc); err != nil {
			return err
		}
	}
	// Recent entries stay decoded in memory: replication reads each entry back (and the one
	// before it, for its term) right after storing it, and decoding a large entry from Bolt
	// each time costs more than keeping it.
	logs, err := raft.NewLogCache(logCacheEntries, n.logs)
	if err != nil {
		return fmt.Errorf("cluster: log cache: %w", err)
	}
	r, err := raft.NewRaft(rc, cfg.FSM, logs, n.logs, snaps, n.transport)
	if err != nil {
		return fmt.Errorf("cluster: start raft: %w", err)
	}
	n.raft = r
	n.batcher = newBatcher(r, cfg.Codec, cfg.MaxBatch)
	n.verifier = &rounds[struct{}]{check: func() (struct{}, error) {
		return struct{}{}, translate(r.VerifyLeader().Error())
	}}
	n.rpc = newRPCClient(n.dialer)
	n.readIndex = &rounds[uint64]{check: n.remoteReadIndex}
	n.rpcSrv = &http.Server{Handler: n.rpcHandler(), ReadHeaderTimeout: 10 * time.Second}
	n.wg.Add(3)
	go func() { defer n.wg.Done(); _ = n.rpcSrv.Serve(n.mux.rpc) }()
	go func() { defer n.wg.Done(); n.watchLeadership() }()
	go func() { defer n.wg.Done(); n.trackFreshness() }()

	if cfg.GossipAddr != "" {
		m, err := startMembership(n)
		if err != nil {
			return err
		}
		n.members = m
	}
	return nil
}

func raftConfig(cfg Config, hl hclog.Logger) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hl.Named("raft")
	// Loopback and LAN timings; pre-vote (on by default) keeps a restarted follower from
	// forcing an election.
	rc.HeartbeatTimeout = 1000 * time.Millisecond
	rc.ElectionTimeout = 1000 * time.Millisecond
	rc.LeaderLeaseTimeout = 500 * time.Millisecond
	rc.CommitTimeout = 5 * time.Millisecond
	rc.SnapshotInterval = orDuration(cfg.SnapshotInterval, 30*time.Second)
	rc.SnapshotThreshold = orUint(cfg.SnapshotThreshold, 8192)
	rc.TrailingLogs = orUint(cfg.TrailingLogs, 10240)
	// A node removed from the configuration (even the leader removing itself) keeps its Raft
	// running as a follower outside the configuration: it starts no elections, and when it is
	// joined again the leader simply replicates to it. Shutting Raft down instead would leave a
	// process that accepts a join yet never answers as a voter until it is restarted.
	rc.ShutdownOnRemove = false
	return rc
}

func (n *Node) bootstrapSelf(rc *raft.Config) error {
	has, err := raft.HasExistingState(n.logs, n.logs, n.snaps)
	if err != nil {
		return fmt.Errorf("cluster: inspect state: %w", err)
	}
	if has {
		return nil
	}
	conf := raft.Configuration{Servers: []raft.Server{{
		ID: rc.LocalID, Address: raft.ServerAddress(n.cfg.Advertise), Suffrage: raft.Voter,
	}}}
	if err := raft.BootstrapCluster(rc, n.logs, n.logs, n.snaps, n.transport, conf); err != nil {
		return fmt.Errorf("cluster: bootstrap: %w", err)
	}
	n.log.Info("bootstrapped a new cluster", "node_id", n.cfg.NodeID, "raft_addr", n.cfg.Advertise)
	return nil
}

// HasState reports whether this node holds Raft state (it has been part of a cluster).
func (n *Node) HasState() bool {
	has, err := raft.HasExistingState(n.logs, n.logs, n.snaps)
	return err == nil && has
}

// Apply proposes a command and waits until it is committed and applied, returning the FSM's
// response and the entry's index. On a follower it forwards the command to the leader over
// the cluster channel; the local FSM may not have applied the index yet when it returns.
func (n *Node) Apply(ctx context.Context, cmd []byte) (any, uint64, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	for {
		var resp any
		var idx uint64
		var err error
		if n.raft.State() == raft.Leader {
			resp, idx, err = n.batcher.submit(ctx, cmd)
		} else if addr, _ := n.raft.LeaderWithID(); addr != "" {
			resp, idx, err = n.forwardApply(ctx, string(addr), cmd)
		} else {
			err = ErrNotLeader
		}
		if !errors.Is(err, ErrNotLeader) {
			return resp, idx, err
		}
		// Nothing was proposed: wait for a (new) leader and try again within the deadline.
		select {
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("%w: %w", ErrNotLeader, ctx.Err())
		case <-n.shutdownCh:
			return nil, 0, ErrShutdown
		case <-time.After(25 * time.Millisecond):
		}
	}
}

func translate(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress),
		errors.Is(err, raft.ErrNotVoter):
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
	NodeID       string        `json:"node_id"`
	Address      string        `json:"address"`
	State        string        `json:"state"` // Leader, Follower, Candidate, Shutdown
	Voter        bool          `json:"voter"`
	LeaderID     string        `json:"leader_id"`
	LeaderAddr   string        `json:"leader_addr"`
	Term         uint64        `json:"term"`
	CommitIndex  uint64        `json:"commit_index"`
	AppliedIndex uint64        `json:"applied_index"`
	LastContact  time.Duration `json:"last_contact_ns"` // since the last contact with the leader; 0 on the leader, -1 never
	HasState     bool          `json:"has_state"`
	GossipAddr   string        `json:"gossip_addr,omitempty"`
}

// Status reports the node's Raft state.
func (n *Node) Status() Status {
	addr, id := n.raft.LeaderWithID()
	st := Status{
		NodeID:       n.cfg.NodeID,
		Address:      n.cfg.Advertise,
		State:        n.raft.State().String(),
		LeaderID:     string(id),
		LeaderAddr:   string(addr),
		Term:         n.raft.CurrentTerm(),
		CommitIndex:  n.raft.CommitIndex(),
		AppliedIndex: n.raft.AppliedIndex(),
		HasState:     n.HasState(),
		GossipAddr:   n.cfg.GossipAddr,
	}
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if s.ID == raft.ServerID(n.cfg.NodeID) {
				st.Voter = s.Suffrage == raft.Voter
			}
		}
	}
	st.LastContact = n.LastContact()
	return st
}

// LastContact is the time since this node last heard from the leader: 0 on the leader, -1
// if it never has.
func (n *Node) LastContact() time.Duration {
	if n.raft.State() == raft.Leader {
		return 0
	}
	lc := n.raft.LastContact()
	if lc.IsZero() {
		return -1
	}
	return time.Since(lc)
}

// KnownLeader reports whether this node knows a leader.
func (n *Node) KnownLeader() bool {
	addr, _ := n.raft.LeaderWithID()
	return addr != ""
}

// IsLeader reports whether this node is the leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Close leaves gossip, shuts Raft down and releases the stores. It is safe to call twice.
func (n *Node) Close() error {
	var err error
	n.closeOnce.Do(func() {
		close(n.shutdownCh)
		if n.members != nil {
			n.members.stop()
		}
		if n.raft != nil {
			err = n.raft.Shutdown().Error()
		}
		if n.rpcSrv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = n.rpcSrv.Shutdown(ctx)
			cancel()
		}
		n.wg.Wait()
		if cerr := n.closeResources(); err == nil {
			err = cerr
		}
	})
	return err
}

func (n *Node) closeResources() error {
	var err error
	if n.transport != nil {
		err = n.transport.Close()
	}
	if n.mux != nil {
		if cerr := n.mux.Close(); err == nil && cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = cerr
		}
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

// ForwardStats counts work this node sent to the leader.
type ForwardStats struct {
	Applies, ReadIndexes uint64
}

// ForwardStats reports how many writes and read-index requests went to the leader.
func (n *Node) ForwardStats() ForwardStats {
	return ForwardStats{Applies: n.forwardedApplies.Load(), ReadIndexes: n.forwardedReads.Load()}
}
