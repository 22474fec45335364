package cluster

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Linearizable reads without a log write per read (Raft dissertation, section 6.4):
//
//  1. When a node becomes leader it commits a no-op command of the FSM's own (Config.Noop), so
//     its FSM has applied every entry of earlier terms. Raft hands the FSM every command and
//     configuration entry, so from then on the FSM's applied index reaches every commit index
//     of the term.
//  2. On the leader, per read: note the commit index, confirm leadership with VerifyLeader
//     (one call shared by all readers waiting at that moment), check the term did not change,
//     and return the index.
//  3. On a follower or read replica: ask the leader for such an index (one RPC shared by all
//     readers waiting at that moment).
//
// The caller then waits until its local FSM applied the index and reads locally.

// ReadIndex returns an index such that a read of local state applied up to it is
// linearizable.
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	sent := time.Now()
	if unsafeLocalReads {
		idx := n.raft.AppliedIndex() // deliberately broken build (reads_unsafe.go)
		n.noteReadIndex(sent, idx)
		return idx, nil
	}
	var idx uint64
	var err error
	if n.raft.State() == raft.Leader {
		idx, err = n.leaderReadIndex(ctx)
	} else {
		idx, err = n.readIndex.do(ctx)
	}
	if err == nil {
		n.noteReadIndex(sent, idx) // a confirmed read index dates the state as a probe does
	}
	return idx, err
}

func (n *Node) leaderReadIndex(ctx context.Context) (uint64, error) {
	term := n.raft.CurrentTerm()
	if err := n.waitTermReady(ctx, term); err != nil {
		return 0, err
	}
	idx := n.raft.CommitIndex()
	if _, err := n.verifier.do(ctx); err != nil {
		return 0, err
	}
	if n.raft.CurrentTerm() != term {
		return 0, fmt.Errorf("%w: term changed during the read", ErrNotLeader)
	}
	return idx, nil
}

// remoteReadIndex asks the leader for a read index.
func (n *Node) remoteReadIndex() (uint64, error) {
	addr, _ := n.raft.LeaderWithID()
	if addr == "" {
		return 0, ErrNotLeader
	}
	n.forwardedReads.Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return n.rpc.readIndex(ctx, string(addr))
}

// waitTermReady waits until this term's no-op has been applied.
func (n *Node) waitTermReady(ctx context.Context, term uint64) error {
	for {
		n.readyMu.Lock()
		ready, ch := n.readyTerm, n.readyCh
		n.readyMu.Unlock()
		if ready == term {
			return nil
		}
		if ready > term || n.raft.State() != raft.Leader {
			return ErrNotLeader
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
		case <-time.After(50 * time.Millisecond): // leadership may be lost without a signal
		}
	}
}

// watchLeadership commits the FSM's no-op at the start of each term this node leads.
func (n *Node) watchLeadership() {
	for {
		select {
		case <-n.shutdownCh:
			return
		case isLeader := <-n.raft.LeaderCh():
			if !isLeader {
				continue
			}
			n.onLeader()
		}
	}
}

func (n *Node) onLeader() {
	term := n.raft.CurrentTerm()
	for n.raft.State() == raft.Leader && n.raft.CurrentTerm() == term {
		err := n.raft.Apply(n.cfg.Noop, 5*time.Second).Error()
		if err == nil {
			n.readyMu.Lock()
			n.readyTerm = term
			close(n.readyCh)
			n.readyCh = make(chan struct{})
			n.readyMu.Unlock()
			n.log.Info("leader ready", "term", term)
			return
		}
		n.log.Warn("leader no-op failed", "term", term, "err", err)
		select {
		case <-n.shutdownCh:
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// LeaderReady reports whether this node is the leader and has applied its term's no-op.
func (n *Node) LeaderReady() bool {
	n.readyMu.Lock()
	defer n.readyMu.Unlock()
	return n.raft.State() == raft.Leader && n.readyTerm == n.raft.CurrentTerm()
}

// rounds shares one call among concurrent callers. A caller joins the next round that starts
// after it arrived, never one already running: for VerifyLeader, the round must confirm
// leadership after the caller noted its commit index; for a remote read index, the leader
// must compute the index after the caller's read began.
type rounds[T any] struct {
	check   func() (T, error)
	mu      sync.Mutex
	waiting []chan roundResult[T]
	running bool
}

type roundResult[T any] struct {
	v   T
	err error
}

func (r *rounds[T]) do(ctx context.Context) (T, error) {
	ch := make(chan roundResult[T], 1)
	r.mu.Lock()
	r.waiting = append(r.waiting, ch)
	if !r.running {
		r.running = true
		go r.run()
	}
	r.mu.Unlock()
	select {
	case res := <-ch:
		return res.v, res.err
	case <-ctx.Done():
		var zero T
		return zero, fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
	}
}

func (r *rounds[T]) run() {
	for {
		r.mu.Lock()
		batch := r.waiting
		r.waiting = nil
		if len(batch) == 0 {
			r.running = false
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
		v, err := r.check()
		for _, ch := range batch {
			ch <- roundResult[T]{v: v, err: err}
		}
	}
}
