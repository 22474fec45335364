package jepsen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Nemesis names.
const (
	NKill            = "kill"             // kill -9 a random node, restart it when the fault ends
	NKillLeader      = "kill-leader"      // kill -9 the leader
	NPause           = "pause"            // SIGSTOP a random node, SIGCONT when the fault ends
	NPauseLeader     = "pause-leader"     // SIGSTOP the leader
	NPartitionHalves = "partition-halves" // random minority / majority
	NPartitionLeader = "partition-leader" // isolate the leader
	NPartitionRing   = "partition-ring"   // every node sees a majority, no two the same one
	NPartitionBridge = "partition-bridge" // two halves joined through one node
	NNetem           = "netem"            // latency, jitter and loss on some nodes
	NMembership      = "membership"       // remove a node from the Raft configuration, add it back
	NClock           = "clock"            // not offered: see ErrClockNemesis
)

// AllNemeses lists every nemesis a run can schedule.
var AllNemeses = []string{NKill, NKillLeader, NPause, NPauseLeader, NPartitionHalves, NPartitionLeader,
	NPartitionRing, NPartitionBridge, NNetem, NMembership}

// ErrClockNemesis explains why there is no clock nemesis: network namespaces share the
// kernel's clock, so skewing one node's clock would skew every node's (and the checker's),
// and keyward has no test hook for a per-process clock. Raft's safety does not depend on clocks;
// what does (leader lease, max_stale, token and AppRole expiry, audit times) would need a
// fake-time hook in the binary to be tested soundly.
var ErrClockNemesis = fmt.Errorf("jepsen: no clock nemesis: namespaces share the kernel clock and keyward has no per-process clock hook")

// fault is a nemesis in effect; stop undoes it.
type fault struct {
	name   string
	detail string
	stop   func(ctx context.Context) error
}

// nemesis starts and stops faults on a cluster.
type nemesis struct {
	c   *Cluster
	nw  Network
	rng *rand.Rand
	cfg *Config
}

func (nm *nemesis) n() int { return len(nm.c.Nodes) }

func (nm *nemesis) randomNode() int { return nm.rng.IntN(nm.n()) }

// leader returns the current leader, or a random node when none is known.
func (nm *nemesis) leader(ctx context.Context) int {
	if l := nm.c.Leader(ctx); l >= 0 {
		return l
	}
	return nm.randomNode()
}

// cut drops traffic both ways between nodes of different groups; nodes in no group keep all
// links. sees(i, j) decides instead when given.
func (nm *nemesis) partition(sees func(i, j int) bool) error {
	return nm.nw.Partition(func(i, j int) bool { return !sees(i, j) || !sees(j, i) })
}

func (nm *nemesis) heal(context.Context) error {
	return nm.nw.Partition(func(int, int) bool { return false })
}

func names(c *Cluster, idx []int) string {
	var s []string
	for _, i := range idx {
		s = append(s, c.Nodes[i].ID)
	}
	return strings.Join(s, ",")
}

// start begins fault name.
func (nm *nemesis) start(ctx context.Context, name string) (*fault, error) {
	n := nm.n()
	switch name {
	case NKill, NKillLeader:
		i := nm.randomNode()
		if name == NKillLeader {
			i = nm.leader(ctx)
		}
		node := nm.c.Nodes[i]
		node.Kill()
		return &fault{name: name, detail: node.ID, stop: func(context.Context) error { return node.Start() }}, nil
	case NPause, NPauseLeader:
		i := nm.randomNode()
		if name == NPauseLeader {
			i = nm.leader(ctx)
		}
		node := nm.c.Nodes[i]
		if err := node.Pause(); err != nil {
			return nil, err
		}
		return &fault{name: name, detail: node.ID, stop: func(context.Context) error { return node.Resume() }}, nil
	case NPartitionHalves:
		perm := nm.rng.Perm(n)
		minority := perm[:(n-1)/2]
		in := func(i int) bool { return slices.Contains(minority, i) }
		err := nm.partition(func(i, j int) bool { return in(i) == in(j) })
		return &fault{name: name, detail: names(nm.c, minority) + " | " + names(nm.c, perm[(n-1)/2:]), stop: nm.heal}, err
	case NPartitionLeader:
		l := nm.leader(ctx)
		err := nm.partition(func(i, j int) bool { return i != l && j != l })
		return &fault{name: name, detail: nm.c.Nodes[l].ID + " isolated", stop: nm.heal}, err
	case NPartitionRing:
		// Node k sees the n/2 nodes on each side of it in a random ring order: a majority
		// each, and for n >= 5 no two nodes see the same majority (for n = 3 it is no cut).
		perm := nm.rng.Perm(n)
		pos := make([]int, n)
		for k, i := range perm {
			pos[i] = k
		}
		reach := max(1, (n+1)/4)
		err := nm.partition(func(i, j int) bool {
			d := (pos[i] - pos[j] + n) % n
			return min(d, n-d) <= reach
		})
		return &fault{name: name, detail: "ring " + names(nm.c, perm), stop: nm.heal}, err
	case NPartitionBridge:
		perm := nm.rng.Perm(n)
		bridge, a, b := perm[0], perm[1:1+(n-1)/2], perm[1+(n-1)/2:]
		in := func(s []int, i int) bool { return slices.Contains(s, i) }
		err := nm.partition(func(i, j int) bool {
			return i == bridge || j == bridge || in(a, i) == in(a, j)
		})
		return &fault{name: name, detail: fmt.Sprintf("%s | bridge %s | %s", names(nm.c, a), nm.c.Nodes[bridge].ID, names(nm.c, b)), stop: nm.heal}, err
	case NNetem:
		k := 1 + nm.rng.IntN(n)
		victims := nm.rng.Perm(n)[:k]
		delay := time.Duration(20+nm.rng.IntN(180)) * time.Millisecond
		loss := float64(nm.rng.IntN(15))
		f := &fault{name: name, detail: fmt.Sprintf("%s delay %v loss %g%%", names(nm.c, victims), delay, loss),
			stop: func(context.Context) error {
				var first error
				for _, i := range victims {
					if err := nm.nw.Restore(i); err != nil && first == nil {
						first = err
					}
				}
				return first
			}}
		for _, i := range victims {
			if err := nm.nw.Degrade(i, delay, delay/4, loss); err != nil {
				return f, err // f undoes what was degraded
			}
		}
		return f, nil
	case NMembership:
		return nm.membership(ctx)
	case NClock:
		return nil, ErrClockNemesis
	}
	return nil, fmt.Errorf("jepsen: unknown nemesis %q", name)
}

// membership removes a random node from the Raft configuration through another node, and
// adds it back when the fault ends by asking it to join through a member.
func (nm *nemesis) membership(ctx context.Context) (*fault, error) {
	victim := nm.randomNode()
	via := (victim + 1) % nm.n()
	if l := nm.c.Leader(ctx); l >= 0 && l != victim {
		via = l
	}
	cl, err := nm.c.Client(via)
	if err != nil {
		return nil, err
	}
	id := nm.c.Nodes[victim].ID
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := cl.RemovePeer(rctx, id); err != nil {
		return nil, fmt.Errorf("remove %s via %s: %w", id, nm.c.Nodes[via].ID, err)
	}
	return &fault{name: NMembership, detail: id + " removed", stop: func(ctx context.Context) error {
		return nm.rejoin(ctx, victim)
	}}, nil
}

// rejoin asks node victim to join the cluster again through any member, and waits until it
// follows the leader. If it does not within 10 seconds (keyward before fb6cf52 shut a removed
// leader's Raft down, so the join was accepted but the node never took part) the node is
// restarted with its data and joins again; the stop event says so and the run fails.
func (nm *nemesis) rejoin(ctx context.Context, victim int) error {
	node := nm.c.Nodes[victim]
	vc, err := nm.c.Client(victim)
	if err != nil {
		return err
	}
	var last error
	deadline := time.Now().Add(60 * time.Second)
	restarted := false
	joinedAt := time.Time{}
	for time.Now().Before(deadline) {
		if joinedAt.IsZero() {
			for k := range nm.c.Nodes {
				if k == victim {
					continue
				}
				jctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				last = vc.JoinCluster(jctx, nm.c.Nodes[k].Addrs.RaftAdvertise)
				cancel()
				if last == nil {
					joinedAt = time.Now()
					break
				}
			}
		}
		if !joinedAt.IsZero() {
			if h, err := nm.c.Health(ctx, victim); err == nil && h.Leader != "" {
				if restarted {
					return errRejoinRestart
				}
				return nil
			}
			if time.Since(joinedAt) > 10*time.Second && !restarted {
				node.Kill()
				if err := node.Start(); err != nil {
					return err
				}
				restarted, joinedAt = true, time.Time{}
			}
		}
		if !sleepCtx(ctx, 500*time.Millisecond) {
			return ctx.Err()
		}
	}
	return fmt.Errorf("rejoin %s: %v", node.ID, last)
}

// errRejoinRestart marks a rejoin that only worked after restarting the removed node.
var errRejoinRestart = errors.New("rejoined only after a restart: the removed node's Raft had shut down")

// healAll undoes every fault: network, netem, paused and stopped nodes.
func (nm *nemesis) healAll(ctx context.Context) error {
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	keep(nm.heal(ctx))
	for i, node := range nm.c.Nodes {
		keep(nm.nw.Restore(i))
		if node.Running() {
			_ = node.Resume()
		} else {
			keep(node.Start())
		}
	}
	return first
}

// schedule runs faults one after another until ctx ends: quiet, fault, quiet, ... cycling
// through the nemeses in a shuffled order so every one of them comes up. Each start and stop
// is an event of the history.
//
// A fault starts only if it can run its full length and leave a quiet period before the run
// ends, so the recovery after it is measured too.
//
// With limit > 0 it stops after that many faults and one more quiet period.
func (nm *nemesis) schedule(ctx context.Context, h *History, list []string, limit int, logf func(string, ...any)) {
	order := []string{}
	deadline, hasDeadline := ctx.Deadline()
	for done := 0; ; done++ {
		if limit > 0 && done == limit {
			sleepCtx(ctx, nm.cfg.Quiet)
			return
		}
		if len(order) == 0 {
			order = slices.Clone(list)
			nm.rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		}
		name := order[0]
		order = order[1:]
		if !sleepCtx(ctx, nm.cfg.Quiet) {
			return
		}
		if hasDeadline && time.Until(deadline) < nm.cfg.Fault+nm.cfg.Quiet/2 {
			<-ctx.Done()
			return
		}
		f, err := nm.start(ctx, name)
		if err != nil {
			h.Event(name, "error", err.Error())
			logf("nemesis %s: %v", name, err)
			if f != nil { // undo what the fault did before it failed
				sctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
				if err := f.stop(sctx); err != nil {
					logf("nemesis %s: undoing the failed fault: %v", name, err)
				}
				cancel()
			}
			continue
		}
		h.Event(name, "start", f.detail)
		logf("nemesis %s start: %s", name, f.detail)
		sleepCtx(ctx, nm.cfg.Fault)
		// Undo the fault even when the run is ending.
		sctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		err = f.stop(sctx)
		cancel()
		if errors.Is(err, errRejoinRestart) {
			h.Event(name, "stop", f.detail+"; "+err.Error())
			logf("nemesis %s stop: %v", name, err)
		} else if err != nil {
			h.Event(name, "stop", "error: "+err.Error())
			logf("nemesis %s stop: %v", name, err)
		} else {
			h.Event(name, "stop", f.detail)
			logf("nemesis %s stop", name)
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// sleepCtx waits d or until ctx ends; it reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
