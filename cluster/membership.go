package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
)

// Gossip (hashicorp/memberlist) gives discovery and failure detection: who is out there, with
// which addresses and role, and who is alive, suspect, dead or gone. Raft membership changes
// are explicit (join RPC, remove, dead-server cleanup); gossip never adds a voter by itself.

// MemberMeta is what each node tells the others over gossip.
type MemberMeta struct {
	RaftAddr string `json:"raft"`
	HTTPAddr string `json:"http,omitempty"`
	Role     string `json:"role"` // "voter" or "replica"
	Expect   int    `json:"expect,omitempty"`
}

// Member is one node in this node's gossip view.
type Member struct {
	ID         string     `json:"id"`
	GossipAddr string     `json:"gossip_addr"`
	Status     string     `json:"status"` // alive, suspect, dead, left
	Meta       MemberMeta `json:"meta"`
	Since      time.Time  `json:"since"`
}

type membership struct {
	n    *Node
	ml   *memberlist.Memberlist
	meta []byte

	mu    sync.Mutex
	known map[string]*Member // guarded by mu

	kick chan struct{}
	done chan struct{}
	wg   sync.WaitGroup
}

func startMembership(n *Node) (*membership, error) {
	cfg := n.cfg
	role := "voter"
	if cfg.ReadReplica {
		role = "replica"
	}
	meta, err := json.Marshal(MemberMeta{RaftAddr: cfg.Advertise, HTTPAddr: cfg.HTTPAddr, Role: role, Expect: cfg.BootstrapExpect})
	if err != nil {
		return nil, err
	}
	m := &membership{n: n, meta: meta, known: map[string]*Member{}, kick: make(chan struct{}, 1), done: make(chan struct{})}

	host, portStr, err := net.SplitHostPort(cfg.GossipAddr)
	if err != nil {
		return nil, fmt.Errorf("cluster: gossip address: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("cluster: gossip port: %w", err)
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.NodeID
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertiseAddr, mc.AdvertisePort = host, port
	mc.ProbeInterval = 500 * time.Millisecond
	mc.ProbeTimeout = 250 * time.Millisecond
	mc.SuspicionMult = 3
	mc.SecretKey = cfg.GossipKey
	mc.Delegate = m
	mc.Events = m
	mc.Logger = log.New(gossipLog{n: n}, "", 0)
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("cluster: start gossip: %w", err)
	}
	m.ml = ml
	m.wg.Add(1)
	go m.loop()
	return m, nil
}

// gossipLog routes memberlist's "[LEVEL] ..." lines into slog.
type gossipLog struct{ n *Node }

func (g gossipLog) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	switch {
	case strings.HasPrefix(line, "[ERR]"):
		g.n.log.Error(line, "component", "gossip")
	case strings.HasPrefix(line, "[WARN]"):
		g.n.log.Warn(line, "component", "gossip")
	default:
		g.n.log.Debug(line, "component", "gossip")
	}
	return len(p), nil
}

// memberlist.Delegate
func (m *membership) NodeMeta(limit int) []byte {
	if len(m.meta) > limit {
		return nil
	}
	return m.meta
}
func (m *membership) NotifyMsg([]byte)                           {}
func (m *membership) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (m *membership) LocalState(join bool) []byte                { return nil }
func (m *membership) MergeRemoteState(buf []byte, join bool)     {}

// memberlist.EventDelegate
func (m *membership) NotifyJoin(node *memberlist.Node)   { m.update(node, "alive") }
func (m *membership) NotifyUpdate(node *memberlist.Node) { m.update(node, "alive") }
func (m *membership) NotifyLeave(node *memberlist.Node) {
	status := "dead"
	if node.State == memberlist.StateLeft {
		status = "left"
	}
	m.update(node, status)
}

func (m *membership) update(node *memberlist.Node, status string) {
	var meta MemberMeta
	_ = json.Unmarshal(node.Meta, &meta)
	m.mu.Lock()
	prev := m.known[node.Name]
	mem := &Member{ID: node.Name, GossipAddr: node.Address(), Status: status, Meta: meta, Since: time.Now()}
	if prev != nil && prev.Status == status {
		mem.Since = prev.Since
	}
	m.known[node.Name] = mem
	m.mu.Unlock()
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// members returns the gossip view: memberlist's live nodes (alive or suspect) plus the dead
// and departed ones it remembers.
func (m *membership) members() []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Member, 0, len(m.known))
	live := map[string]bool{}
	for _, node := range m.ml.Members() {
		live[node.Name] = true
		mem := Member{ID: node.Name, GossipAddr: node.Address(), Status: "alive"}
		if node.State == memberlist.StateSuspect {
			mem.Status = "suspect"
		}
		_ = json.Unmarshal(node.Meta, &mem.Meta)
		if k := m.known[node.Name]; k != nil {
			mem.Since = k.Since
		}
		out = append(out, mem)
	}
	for _, k := range m.known {
		if !live[k.ID] {
			out = append(out, *k)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (m *membership) stop() {
	close(m.done)
	m.wg.Wait()
	_ = m.ml.Leave(time.Second)
	_ = m.ml.Shutdown()
}

// loop discovers the cluster through the Join addresses (retrying until it succeeds): it
// joins gossip through them and, when they belong to a cluster with a leader, asks to be
// added. Without an existing cluster and with BootstrapExpect set, it bootstraps once enough
// voters are seen. On the leader it cleans up dead servers.
func (m *membership) loop() {
	defer m.wg.Done()
	joined := len(m.n.cfg.Join) == 0
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if !joined {
			joined = m.tryJoin()
		}
		if !joined && m.n.cfg.BootstrapExpect > 0 && !m.n.HasState() {
			joined = m.tryBootstrap()
		}
		if m.n.IsLeader() && m.n.cfg.DeadServerCleanup > 0 {
			m.cleanupDead()
		}
		select {
		case <-m.done:
			return
		case <-t.C:
		case <-m.kick:
		}
	}
}

// tryJoin contacts the Join addresses (any members' cluster addresses): it joins gossip
// through them, and if one belongs to a cluster with a leader, asks to be added (the request
// reaches the leader). It reports whether this node is now part of a cluster.
func (m *membership) tryJoin() bool {
	n := m.n
	for _, addr := range n.cfg.Join {
		if addr == n.cfg.Advertise {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		st, err := n.rpc.status(ctx, addr)
		cancel()
		if err != nil {
			n.log.Debug("join: member not reachable yet", "via", addr, "err", err)
			continue
		}
		if st.GossipAddr != "" {
			if _, err := m.ml.Join([]string{st.GossipAddr}); err != nil {
				n.log.Debug("gossip join failed", "via", st.GossipAddr, "err", err)
			}
		}
		if !st.HasState || st.LeaderID == "" {
			continue // no cluster there yet (bootstrap-expect may form one)
		}
		jctx, jcancel := context.WithTimeout(context.Background(), 15*time.Second)
		err = n.JoinCluster(jctx, addr)
		jcancel()
		if err != nil {
			n.log.Warn("join failed; retrying", "via", addr, "err", err)
			continue
		}
		n.log.Info("joined the cluster", "via", addr)
		return true
	}
	return false
}

// tryBootstrap forms the cluster once BootstrapExpect voters (with the same expectation) see
// each other and none of them already holds Raft state. Every one of them bootstraps with the
// identical configuration, so exactly one cluster forms.
func (m *membership) tryBootstrap() bool {
	n := m.n
	if n.HasState() {
		return true
	}
	var voters []Member
	for _, mem := range m.members() {
		if mem.Status == "alive" && mem.Meta.Role == "voter" && mem.Meta.Expect == n.cfg.BootstrapExpect {
			voters = append(voters, mem)
		}
	}
	if len(voters) < n.cfg.BootstrapExpect {
		return false
	}
	var conf raft.Configuration
	for _, v := range voters {
		if v.ID != n.cfg.NodeID {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			st, err := n.rpc.status(ctx, v.Meta.RaftAddr)
			cancel()
			if err != nil {
				return false // ask again next round
			}
			if st.HasState && st.LeaderID != "" {
				n.log.Info("a cluster already exists; waiting to be added", "seen", v.ID)
				return true
			}
		}
		conf.Servers = append(conf.Servers, raft.Server{ID: raft.ServerID(v.ID), Address: raft.ServerAddress(v.Meta.RaftAddr), Suffrage: raft.Voter})
	}
	if err := n.raft.BootstrapCluster(conf).Error(); err != nil {
		n.log.Warn("bootstrap failed", "err", err)
		return n.HasState()
	}
	n.log.Info("bootstrapped the cluster", "voters", len(conf.Servers))
	return true
}

// cleanupDead removes voters that gossip has seen dead for longer than DeadServerCleanup, as
// long as at least three voters remain.
func (m *membership) cleanupDead() {
	n := m.n
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	voters := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	now := time.Now()
	for _, mem := range m.members() {
		if mem.Status != "dead" && mem.Status != "left" || now.Sub(mem.Since) < n.cfg.DeadServerCleanup {
			continue
		}
		for _, s := range f.Configuration().Servers {
			if string(s.ID) != mem.ID {
				continue
			}
			if s.Suffrage == raft.Voter && voters-1 < 3 {
				continue
			}
			if err := n.removeServer(mem.ID); err == nil {
				n.log.Warn("removed dead server", "id", mem.ID, "dead_for", now.Sub(mem.Since))
				if s.Suffrage == raft.Voter {
					voters--
				}
			}
		}
	}
}

// Members returns this node's gossip view (nil when gossip is off).
func (n *Node) Members() []Member {
	if n.members == nil {
		return nil
	}
	return n.members.members()
}

// JoinCluster asks the cluster at addr (any member's cluster address) to add this node.
func (n *Node) JoinCluster(ctx context.Context, addr string) error {
	var gossip string
	if n.members != nil {
		gossip = n.cfg.GossipAddr
	}
	body, _, _, err := n.rpc.call(ctx, "POST", addr, "/rpc/join", mustJSON(joinRequest{
		ID: n.cfg.NodeID, Addr: n.cfg.Advertise, Voter: !n.cfg.ReadReplica, Gossip: gossip,
	}))
	if err != nil {
		return err
	}
	var resp joinResponse
	_ = json.Unmarshal(body, &resp)
	if n.members != nil && len(resp.Gossip) > 0 {
		if _, err := n.members.ml.Join(resp.Gossip); err != nil {
			return fmt.Errorf("cluster: gossip join: %w", err)
		}
	}
	return nil
}

// gossipAddrs lists the gossip addresses of live members, for a joining node.
func (n *Node) gossipAddrs() []string {
	var out []string
	for _, m := range n.Members() {
		if m.Status == "alive" || m.Status == "suspect" {
			out = append(out, m.GossipAddr)
		}
	}
	return out
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// LeaderAPI returns the leader's advertised API URL ("" when unknown): this node's own when it
// leads, otherwise the one the leader gossips.
func (n *Node) LeaderAPI() string {
	_, id := n.raft.LeaderWithID()
	switch {
	case id == "":
		return ""
	case string(id) == n.cfg.NodeID:
		return n.cfg.HTTPAddr
	}
	for _, m := range n.Members() {
		if m.ID == string(id) {
			return m.Meta.HTTPAddr
		}
	}
	return ""
}
