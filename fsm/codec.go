package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Apply responses cross the network when a follower forwards a command to the leader. They
// travel as JSON; business errors travel as a kind naming their sentinel plus the message.

type wireError struct {
	Kind     string         `json:"kind"`
	Message  string         `json:"message"`
	Conflict *ConflictError `json:"conflict,omitempty"`
}

type wireResult struct {
	Index     uint64         `json:"index"`
	Err       *wireError     `json:"err,omitempty"`
	Secret    *Secret        `json:"secret,omitempty"`
	Version   *SecretVersion `json:"version,omitempty"`
	Destroyed []uint64       `json:"destroyed,omitempty"`
	AuditSeq  uint64         `json:"audit_seq,omitempty"`
	Token     *Token         `json:"token,omitempty"`
	RotSeq    uint64         `json:"rotation_seq,omitempty"`
}

type wireResponse struct {
	Result *wireResult  `json:"result,omitempty"`
	Batch  []wireResult `json:"batch,omitempty"`
}

var errorKinds = []struct {
	kind string
	err  error
}{
	{"not_found", ErrNotFound},
	{"deleted", ErrDeleted},
	{"not_deleted", ErrNotDeleted},
	{"version_is_current", ErrVersionIsCurrent},
	{"invalid", ErrInvalid},
	{"denied", ErrDenied},
	{"rotation_busy", ErrRotationBusy},
	{"rotation_step", ErrRotationStep},
}

func toWireResult(r *Result) wireResult {
	w := wireResult{Index: r.Index, Secret: r.Secret, Destroyed: r.Destroyed, AuditSeq: r.AuditSeq, Token: r.Token, RotSeq: r.RotationSeq}
	if r.Version != nil {
		// The proposer already has the ciphertext; send the version's metadata only.
		v := *r.Version
		v.Ciphertext, v.WrappedKey = nil, nil
		w.Version = &v
	}
	if r.Err != nil {
		we := &wireError{Kind: "other", Message: r.Err.Error()}
		var ce *ConflictError
		if errors.As(r.Err, &ce) {
			we.Kind, we.Conflict = "conflict", ce
		} else {
			for _, k := range errorKinds {
				if errors.Is(r.Err, k.err) {
					we.Kind = k.kind
					break
				}
			}
		}
		w.Err = we
	}
	return w
}

func fromWireResult(w wireResult) *Result {
	r := &Result{Index: w.Index, Secret: w.Secret, Version: w.Version, Destroyed: w.Destroyed, AuditSeq: w.AuditSeq, Token: w.Token, RotationSeq: w.RotSeq}
	if we := w.Err; we != nil {
		switch {
		case we.Kind == "conflict" && we.Conflict != nil:
			r.Err = we.Conflict
		default:
			r.Err = errors.New(we.Message)
			for _, k := range errorKinds {
				if k.kind == we.Kind {
					msg := strings.TrimSuffix(strings.TrimSuffix(we.Message, k.err.Error()), ": ")
					if msg == "" || msg == we.Message {
						r.Err = k.err
					} else {
						r.Err = fmt.Errorf("%s: %w", msg, k.err)
					}
					break
				}
			}
		}
	}
	return r
}

// MarshalResponse encodes an Apply response (*Result or *BatchResult) for the network.
func MarshalResponse(resp any) ([]byte, error) {
	var w wireResponse
	switch r := resp.(type) {
	case *Result:
		wr := toWireResult(r)
		w.Result = &wr
	case *BatchResult:
		w.Batch = make([]wireResult, len(r.Results))
		for i, x := range r.Results {
			w.Batch[i] = toWireResult(x)
		}
	case nil:
	default:
		return nil, fmt.Errorf("fsm: cannot marshal response %T", resp)
	}
	return json.Marshal(w)
}

// UnmarshalResponse decodes what MarshalResponse encoded.
func UnmarshalResponse(b []byte) (any, error) {
	var w wireResponse
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("fsm: decode response: %w", err)
	}
	switch {
	case w.Result != nil:
		return fromWireResult(*w.Result), nil
	case w.Batch != nil:
		br := &BatchResult{Results: make([]*Result, len(w.Batch))}
		for i, x := range w.Batch {
			br.Results[i] = fromWireResult(x)
		}
		return br, nil
	}
	return nil, nil
}

// Codec gives the cluster package what it needs to batch, split and forward responses without
// knowing the command format.
type Codec struct{}

// EncodeBatch implements cluster.Codec.
func (Codec) EncodeBatch(cmds [][]byte) []byte { return EncodeBatch(cmds) }

// SplitResponse implements cluster.Codec.
func (Codec) SplitResponse(resp any, n int) []any { return SplitResponse(resp, n) }

// MarshalResponse implements cluster.Codec.
func (Codec) MarshalResponse(resp any) ([]byte, error) { return MarshalResponse(resp) }

// UnmarshalResponse implements cluster.Codec.
func (Codec) UnmarshalResponse(b []byte) (any, error) { return UnmarshalResponse(b) }
