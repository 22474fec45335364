package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// batcher turns concurrent proposals on the leader into few Raft entries. While maxInFlight
// entries are being committed, new proposals queue; the next entry takes all of them (up to
// maxBatch), so under load many writes share one entry and one fsync.
type batcher struct {
	r        *raft.Raft
	codec    Codec
	maxBatch int
	reqs     chan *proposal
	slots    chan struct{}
}

const maxInFlight = 2

type proposal struct {
	cmd  []byte
	done chan proposalResult
}

type proposalResult struct {
	resp  any
	index uint64
	err   error
}

func newBatcher(r *raft.Raft, codec Codec, maxBatch int) *batcher {
	b := &batcher{r: r, codec: codec, maxBatch: maxBatch, reqs: make(chan *proposal, 4096),
		slots: make(chan struct{}, maxInFlight)}
	go b.loop()
	return b
}

// submit queues cmd and waits for its result. Once queued, a proposal is not withdrawn: if ctx
// ends first the outcome is unknown.
func (b *batcher) submit(ctx context.Context, cmd []byte) (any, uint64, error) {
	p := &proposal{cmd: cmd, done: make(chan proposalResult, 1)}
	select {
	case b.reqs <- p:
	case <-ctx.Done():
		return nil, 0, fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
	}
	select {
	case res := <-p.done:
		return res.resp, res.index, res.err
	case <-ctx.Done():
		return nil, 0, fmt.Errorf("%w: %w", ErrOutcomeUnknown, ctx.Err())
	}
}

func (b *batcher) loop() {
	for first := range b.reqs {
		b.slots <- struct{}{} // wait for a free in-flight slot; proposals queue meanwhile
		batch := []*proposal{first}
	drain:
		for len(batch) < b.maxBatch {
			select {
			case p := <-b.reqs:
				batch = append(batch, p)
			default:
				break drain
			}
		}
		data := batch[0].cmd
		if len(batch) > 1 {
			cmds := make([][]byte, len(batch))
			for i, p := range batch {
				cmds[i] = p.cmd
			}
			data = b.codec.EncodeBatch(cmds)
		}
		f := b.r.Apply(data, 5*time.Second)
		go b.finish(f, batch)
	}
}

func (b *batcher) finish(f raft.ApplyFuture, batch []*proposal) {
	err := translate(f.Error())
	<-b.slots
	if err != nil {
		for _, p := range batch {
			p.done <- proposalResult{err: err}
		}
		return
	}
	resps := b.codec.SplitResponse(f.Response(), len(batch))
	for i, p := range batch {
		p.done <- proposalResult{resp: resps[i], index: f.Index()}
	}
}
