package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// CmdBatch carries many commands in one Raft entry, so concurrent writes share one entry and
// one fsync. Its payload is binary, not JSON (the commands inside already are): for each
// command, its length as a uvarint followed by its bytes. A batch never contains a batch.
const CmdBatch CommandType = 7

// BatchResult is Apply's response to a batch: one Result per command, in order.
type BatchResult struct {
	Results []*Result
}

// EncodeBatch frames commands into one CmdBatch entry.
func EncodeBatch(cmds [][]byte) []byte {
	n := 1
	for _, c := range cmds {
		n += binary.MaxVarintLen64 + len(c)
	}
	out := make([]byte, 1, n)
	out[0] = byte(CmdBatch)
	for _, c := range cmds {
		out = binary.AppendUvarint(out, uint64(len(c)))
		out = append(out, c...)
	}
	return out
}

func splitBatch(payload []byte) ([][]byte, error) {
	var cmds [][]byte
	for len(payload) > 0 {
		n, k := binary.Uvarint(payload)
		if k <= 0 || n > uint64(len(payload)-k) {
			return nil, errors.New("malformed batch framing")
		}
		cmds = append(cmds, payload[k:k+int(n)])
		payload = payload[k+int(n):]
	}
	return cmds, nil
}

// applyBatch applies each command of a batch in order, each on the state the previous one
// left; a command's business failure affects only its own Result.
func (f *FSM) applyBatch(cur *State, index uint64, payload []byte) (*State, *BatchResult, error) {
	cmds, err := splitBatch(payload)
	if err != nil {
		return nil, nil, err
	}
	out := &BatchResult{Results: make([]*Result, len(cmds))}
	for i, c := range cmds {
		if len(c) > 0 && CommandType(c[0])&^FlagIgnoreUnknown == CmdBatch {
			return nil, nil, errors.New("nested batch")
		}
		next, res, err := f.applyOne(cur, index, c)
		if err != nil {
			return nil, nil, fmt.Errorf("batch command %d: %w", i, err)
		}
		cur = next
		out.Results[i] = res
	}
	return cur, out, nil
}

// SplitResponse turns Apply's response to an entry of n commands (n == 1: a plain command;
// n > 1: a batch) into one response per command.
func SplitResponse(resp any, n int) []any {
	out := make([]any, n)
	if br, ok := resp.(*BatchResult); ok {
		for i := range out {
			if i < len(br.Results) {
				out[i] = br.Results[i]
			}
		}
		return out
	}
	if n > 0 {
		out[0] = resp
	}
	return out
}
