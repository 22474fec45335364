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
//     its FSM has applied every entry of earlier terms. Because raft hands the FSM every
//     command and configuration entry, from then on the FSM's applied index reaches every
//     commit index of the term.
//  2. Per read: note the commit index, confirm leadership with VerifyLeader (one call shared by
//     all readers waiting at that moment), check the term did not change, and return the
//     index. The caller waits until its FSM applied that index and then reads locally.

// ReadIndex returns an index such that a read of local state applied up to it is
// linearizable. It fails with ErrNotLeader on a node that is not the leader.
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	if n.raft.State() != raft.Leader {
		return 0, ErrNotLeader
	}
	term := n.raft.CurrentTerm()
	if err := n.waitTermReady(ctx, term); err != nil {
		return 0, err
	}
	idx := n.raft.CommitIndex()
	if err := n.verifier.verify(ctx); err != nil {
		return 0, err
	}
	if n.raft.CurrentTerm() != term {
		return 0, fmt.Errorf("%w: term changed during the read", ErrNotLeader)
	}
	return idx, nil
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
	defer close(n.watchDone)
	for {
		select {
		case <-n.shutdownCh:
			return
		case isLeader := <-n.raft.LeaderCh():
			if !isLeader {
				continue
			}
			term := n.raft.CurrentTerm()
			for n.raft.State() == raft.Leader && n.raft.CurrentTerm() == term {
				err := n.raft.Apply(n.cfg.Noop, 5*time.Second).Error()
				if err == nil {
					n.readyMu.Lock()
					n.readyTerm = term
					close(n.readyCh)
					n.readyCh = make(chan struct{})
					n.readyMu.Unlock()
					n.log.Info("leader ready for linearizable reads", "term", term)
					break
				}
				n.log.Warn("leader no-op failed", "term", term, "err", err)
				select {
				case <-n.shutdownCh:
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}
	}
}

// leaderVerifier shares VerifyLeader calls among concurrent readers. A reader joins the next
// round that starts after it arrived, never one already running: the round must confirm
// leadership after the reader noted its commit index.
type leaderVerifier struct {
	check   func() error
	mu      sync.Mutex
	waiting []chan error
	running bool
}

func (v *leaderVerifier) verify(ctx context.Context) error {
	ch := make(chan error, 1)
	v.mu.Lock()
	v.waiting = append(v.waiting, ch)
	if !v.running {
		v.running = true
		go v.rounds()
	}
	v.mu.Unlock()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
	}
}

func (v *leaderVerifier) rounds() {
	for {
		v.mu.Lock()
		batch := v.waiting
		v.waiting = nil
		if len(batch) == 0 {
			v.running = false
			v.mu.Unlock()
			return
		}
		v.mu.Unlock()
		err := v.check()
		for _, ch := range batch {
			ch <- err
		}
	}
}
