package cluster

import (
	"context"
	"sync"
	"time"
)

// How a node knows how old its state may be, for stale reads with a bound (max_stale).
//
// The time since the leader was last heard from says little: Raft heartbeats carry no data,
// so a follower that fell behind during a partition hears from the leader again long before
// it has caught up. Instead the node asks for a read index every freshnessInterval (on the
// leader that confirms leadership; on a follower it asks the leader, sharing the round with
// linearizable reads). Once its FSM has applied that index, its state holds everything
// committed before the request was sent, so its state is no older than that send time. The
// age is measured on this node's own clock only.

const (
	freshnessInterval = 100 * time.Millisecond
	freshnessTimeout  = 2 * time.Second
	maxProbes         = 32 // answered read indexes kept while waiting for the FSM
)

type freshness struct {
	mu       sync.Mutex
	at       time.Time // the state holds everything committed before this instant
	probes   []probe   // answered, waiting for the FSM to apply their index
	inFlight bool
}

type probe struct {
	sent  time.Time
	index uint64
}

// Staleness is how old this node's state may be: the time since the newest instant before
// which it provably holds every committed write. Negative if it has never known.
func (n *Node) Staleness() time.Duration {
	n.settleProbes(n.fsmApplied())
	n.fresh.mu.Lock()
	at := n.fresh.at
	n.fresh.mu.Unlock()
	if at.IsZero() {
		return -1
	}
	return time.Since(at)
}

// trackFreshness runs until shutdown, probing every freshnessInterval.
func (n *Node) trackFreshness() {
	t := time.NewTicker(freshnessInterval)
	defer t.Stop()
	for {
		select {
		case <-n.shutdownCh:
			return
		case <-t.C:
		}
		n.settleProbes(n.fsmApplied())
		n.fresh.mu.Lock()
		start := !n.fresh.inFlight
		n.fresh.inFlight = true
		n.fresh.mu.Unlock()
		if start {
			n.wg.Add(1) // trackFreshness holds the group open, so this cannot race Wait
			go func() { defer n.wg.Done(); n.probe() }()
		}
	}
}

// probe asks for a read index (ReadIndex records the answer with the time it was asked).
func (n *Node) probe() {
	ctx, cancel := context.WithTimeout(context.Background(), freshnessTimeout)
	_, err := n.ReadIndex(ctx)
	cancel()
	n.fresh.mu.Lock()
	n.fresh.inFlight = false
	n.fresh.mu.Unlock()
	if err == nil {
		n.settleProbes(n.fsmApplied())
	}
}

// noteReadIndex records that idx was confirmed as the commit index by a request sent at sent
// (a probe's or a linearizable read's): once idx is applied, the state holds everything
// committed before sent. Reads confirmed at the same index keep one entry, the latest.
func (n *Node) noteReadIndex(sent time.Time, idx uint64) {
	n.fresh.mu.Lock()
	defer n.fresh.mu.Unlock()
	if k := len(n.fresh.probes) - 1; k >= 0 && n.fresh.probes[k].index == idx {
		if sent.After(n.fresh.probes[k].sent) {
			n.fresh.probes[k].sent = sent
		}
		return
	}
	if len(n.fresh.probes) == maxProbes {
		// A follower whose FSM lags collects one per read: merge the two oldest into one that
		// claims no more than either (the earlier send time, once the higher index is applied).
		a, b := n.fresh.probes[0], n.fresh.probes[1]
		n.fresh.probes[1] = probe{sent: minTime(a.sent, b.sent), index: max(a.index, b.index)}
		n.fresh.probes = append(n.fresh.probes[:0], n.fresh.probes[1:]...)
	}
	n.fresh.probes = append(n.fresh.probes, probe{sent: sent, index: idx})
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// settleProbes advances the fresh instant past every probe whose index is applied.
func (n *Node) settleProbes(applied uint64) {
	n.fresh.mu.Lock()
	defer n.fresh.mu.Unlock()
	keep := n.fresh.probes[:0]
	for _, p := range n.fresh.probes {
		if p.index <= applied {
			if p.sent.After(n.fresh.at) {
				n.fresh.at = p.sent
			}
			continue
		}
		keep = append(keep, p)
	}
	n.fresh.probes = keep
}

// appliedIndexer is an FSM that reports the index its state reflects (fsm.FSM does).
type appliedIndexer interface{ AppliedIndex() uint64 }

// fsmApplied is the index the FSM's state reflects. Raft's own AppliedIndex runs ahead of it:
// it counts entries handed to the FSM, which applies them later (thousands later while a
// restarted node catches up).
func (n *Node) fsmApplied() uint64 {
	if a, ok := n.cfg.FSM.(appliedIndexer); ok {
		return a.AppliedIndex()
	}
	return n.raft.AppliedIndex()
}
