package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// leaderAddr returns the leader's cluster address, or ErrNotLeader.
func (n *Node) leaderAddr() (string, error) {
	addr, _ := n.raft.LeaderWithID()
	if addr == "" {
		return "", ErrNotLeader
	}
	return string(addr), nil
}

// onLeader runs op here when this node leads, or sends it to the leader's RPC path.
func (n *Node) onLeaderOrForward(ctx context.Context, path string, req any, op func() error) error {
	if n.raft.State() == raft.Leader {
		return op()
	}
	addr, err := n.leaderAddr()
	if err != nil {
		return err
	}
	return n.rpc.postJSON(ctx, addr, path, req)
}

// addServer adds (or updates) a server in the Raft configuration; on a follower it forwards.
func (n *Node) addServer(id, addr string, voter bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return n.onLeaderOrForward(ctx, "/rpc/join", joinRequest{ID: id, Addr: addr, Voter: voter}, func() error {
		f := n.raft.GetConfiguration()
		if err := f.Error(); err != nil {
			return translate(err)
		}
		for _, s := range f.Configuration().Servers {
			if s.ID == raft.ServerID(id) && string(s.Address) == addr && (s.Suffrage == raft.Voter) == voter {
				return nil // already a member as asked
			}
		}
		var fut raft.IndexFuture
		if voter {
			fut = n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, 10*time.Second)
		} else {
			fut = n.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), 0, 10*time.Second)
		}
		if err := fut.Error(); err != nil {
			return translate(err)
		}
		n.log.Info("added server", "id", id, "addr", addr, "voter", voter)
		return nil
	})
}

// Remove takes a server out of the Raft configuration (from any node).
func (n *Node) Remove(ctx context.Context, id string) error {
	return n.onLeaderOrForward(ctx, "/rpc/remove", idRequest{ID: id}, func() error { return n.removeServer(id) })
}

func (n *Node) removeServer(id string) error {
	if n.raft.State() != raft.Leader {
		return n.Remove(context.Background(), id)
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return translate(err)
	}
	found := false
	for _, s := range f.Configuration().Servers {
		found = found || s.ID == raft.ServerID(id)
	}
	if !found {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err := n.raft.RemoveServer(raft.ServerID(id), 0, 10*time.Second).Error(); err != nil {
		return translate(err)
	}
	n.log.Info("removed server", "id", id)
	return nil
}

// TransferLeader hands leadership to id, or to the most up-to-date voter when id is empty.
func (n *Node) TransferLeader(ctx context.Context, id string) error {
	return n.onLeaderOrForward(ctx, "/rpc/transfer", idRequest{ID: id}, func() error { return n.transferLeadership(id) })
}

func (n *Node) transferLeadership(id string) error {
	if n.raft.State() != raft.Leader {
		return n.TransferLeader(context.Background(), id)
	}
	var f raft.Future
	if id == "" {
		f = n.raft.LeadershipTransfer()
	} else {
		var addr raft.ServerAddress
		cf := n.raft.GetConfiguration()
		if err := cf.Error(); err != nil {
			return translate(err)
		}
		for _, s := range cf.Configuration().Servers {
			if s.ID == raft.ServerID(id) {
				addr = s.Address
			}
		}
		if addr == "" {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		f = n.raft.LeadershipTransferToServer(raft.ServerID(id), addr)
	}
	return translate(f.Error())
}

// Peer is one server of the Raft configuration as seen from this node, with what it reports
// about itself.
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

// Peers lists the Raft configuration and asks each server for its status.
func (n *Node) Peers(ctx context.Context) ([]Peer, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, translate(err)
	}
	_, leaderID := n.raft.LeaderWithID()
	servers := f.Configuration().Servers
	out := make([]Peer, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		out[i] = Peer{ID: string(s.ID), Address: string(s.Address), Voter: s.Suffrage == raft.Voter, Leader: s.ID == leaderID}
		wg.Add(1)
		go func(p *Peer) {
			defer wg.Done()
			var st Status
			var err error
			if p.ID == n.cfg.NodeID {
				st = n.Status()
			} else {
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				st, err = n.rpc.status(cctx, p.Address)
				cancel()
			}
			if err != nil {
				return
			}
			p.Reachable, p.State, p.LastContact, p.AppliedIndex, p.Term = true, st.State, st.LastContact, st.AppliedIndex, st.Term
		}(&out[i])
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// ClusterStatus summarises the health of the voters.
type ClusterStatus struct {
	Healthy          bool   `json:"healthy"`
	Leader           string `json:"leader"`
	Voters           int    `json:"voters"`
	HealthyVoters    int    `json:"healthy_voters"`
	Replicas         int    `json:"replicas"`
	Quorum           int    `json:"quorum"`
	FailureTolerance int    `json:"failure_tolerance"`
}

// ClusterStatus reports whether a quorum of voters is reachable and how many more voters
// may fail before the cluster loses quorum.
func (n *Node) ClusterStatus(ctx context.Context) (ClusterStatus, error) {
	peers, err := n.Peers(ctx)
	if err != nil {
		return ClusterStatus{}, err
	}
	var cs ClusterStatus
	for _, p := range peers {
		if p.Leader {
			cs.Leader = p.ID
		}
		if !p.Voter {
			cs.Replicas++
			continue
		}
		cs.Voters++
		if p.Reachable && (p.Leader || (p.LastContact >= 0 && p.LastContact < 5*time.Second)) {
			cs.HealthyVoters++
		}
	}
	cs.Quorum = cs.Voters/2 + 1
	cs.FailureTolerance = max(cs.HealthyVoters-cs.Quorum, 0)
	cs.Healthy = cs.Leader != "" && cs.HealthyVoters >= cs.Quorum
	return cs, nil
}

// Restore replaces the whole replicated state with an FSM snapshot stream (from any node: a
// follower forwards it to the leader). Every node ends up with the restored state.
func (n *Node) Restore(ctx context.Context, snapshot []byte) error {
	if n.raft.State() == raft.Leader {
		return n.restoreLocal(snapshot)
	}
	addr, err := n.leaderAddr()
	if err != nil {
		return err
	}
	_, _, _, err = n.rpc.call(ctx, "POST", addr, "/rpc/restore", snapshot)
	return err
}

func (n *Node) restoreLocal(snapshot []byte) error {
	if n.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Size: int64(len(snapshot))}
	if err := n.raft.Restore(meta, bytes.NewReader(snapshot), time.Minute); err != nil {
		return fmt.Errorf("cluster: restore: %w", translate(err))
	}
	// Raft's restore ends with an internal no-op the FSM never sees; commit one of ours so the
	// FSM's applied index catches up with the commit index again (see reads.go).
	if err := n.raft.Apply(n.cfg.Noop, 10*time.Second).Error(); err != nil {
		return fmt.Errorf("cluster: after restore: %w", translate(err))
	}
	n.log.Info("restored a snapshot into the cluster")
	return nil
}

// Recover rewrites the Raft configuration of a stopped node's data dir so it can start as a
// smaller cluster (lost-quorum recovery). servers maps node id to cluster address; fsm must be
// a fresh FSM of the same kind.
func Recover(dataDir string, fsm raft.FSM, servers map[string]string, log io.Writer) error {
	if len(servers) == 0 {
		return errors.New("cluster: recover needs at least one server")
	}
	n, err := openOffline(dataDir)
	if err != nil {
		return err
	}
	defer n.close()
	var conf raft.Configuration
	ids := make([]string, 0, len(servers))
	for id := range servers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		conf.Servers = append(conf.Servers, raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(servers[id]), Suffrage: raft.Voter})
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(ids[0])
	_, trans := raft.NewInmemTransport("")
	if err := raft.RecoverCluster(rc, fsm, n.logs, n.logs, n.snaps, trans, conf); err != nil {
		return fmt.Errorf("cluster: recover: %w", err)
	}
	if log != nil {
		fmt.Fprintf(log, "recovered %s: configuration is now %v\n", dataDir, ids)
	}
	return nil
}
