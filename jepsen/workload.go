package jepsen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"syscall"
	"time"

	"github.com/keyward/keyward/api/client"
	"github.com/keyward/keyward/api/wire"
)

// Workload names.
const (
	WRegister = "register"
	WVersions = "versions"
	WStale    = "stale"
	WAudit    = "audit"
	WRotation = "rotation"
)

// AllWorkloads lists every workload, in the order runs mix them.
var AllWorkloads = []string{WRegister, WVersions, WStale, WAudit, WRotation}

// worker is one client process of the history, bound to one node.
type worker struct {
	id   int
	node int
	cl   *client.Client
	h    *History
	rng  *rand.Rand
	cfg  *Config
	// last version this worker saw per key, for its next cas.
	seen map[string]uint64
	n    int
	// auditGen is the key generation of the audit key this worker wrote last (-1: none).
	auditGen int64
	// step performs one operation of the worker's workload.
	step func(ctx context.Context, w *worker)
}

// opTimeout bounds each client operation.
const opTimeout = 5 * time.Second

// Keys change generation every Config.KeyEpoch, so no secret collects more versions than a
// listing can carry (GET /v1/versions is not paginated and the client caps answers at 2 MiB).
func (w *worker) gen() int64 { return w.h.Now() / int64(w.cfg.KeyEpoch) }

func (w *worker) registerKey(k int) string { return fmt.Sprintf("jepsen/register/g%d/k%d", w.gen(), k) }
func (w *worker) versionsKey(k int) string { return fmt.Sprintf("jepsen/versions/g%d/k%d", w.gen(), k) }

// versionInfos converts a listing's versions.
func versionInfos(vs *wire.VersionsResponse) []VersionInfo {
	out := make([]VersionInfo, 0, len(vs.Versions))
	for _, v := range vs.Versions {
		out = append(out, VersionInfo{Version: v.Version, VersionID: v.VersionID, State: v.State, Destroyed: v.Destroyed})
	}
	return out
}

// newValue is a value no other operation writes.
func (w *worker) newValue() string {
	w.n++
	return fmt.Sprintf("w%d-%d", w.id, w.n)
}

// exec runs fn as operation op and records it with its outcome. write says whether the
// operation may change state (a write's failure is only definite for some errors).
func (w *worker) exec(ctx context.Context, op Op, write bool, fn func(ctx context.Context, op *Op) error) Op {
	op.Worker, op.Node = w.id, w.node
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	ctx = withRequestID(ctx, &op.RequestID)
	op.Invoke = w.h.Now()
	err := fn(ctx, &op)
	op.Complete = w.h.Now()
	op.Type, op.Code = classify(err, write)
	if err != nil {
		op.Err = err.Error()
		var ae *client.APIError
		if errors.As(err, &ae) {
			op.CurrentVersion = ae.CurrentVersion
		}
	}
	w.h.Add(op)
	return op
}

// definiteCodes are error codes after which a write certainly did not happen (docs/API.md:
// the node refused before proposing, or the command was rejected).
var definiteCodes = map[string]bool{
	"no_leader": true, "busy": true, "not_initialized": true, "kms_unavailable": true,
	"too_stale": true, "index_not_reached": true,
}

// classify turns an operation's error into its outcome (ok, fail or info) and error code.
func classify(err error, write bool) (string, string) {
	if err == nil {
		return OK, ""
	}
	var ae *client.APIError
	if errors.As(err, &ae) {
		if !write || ae.Status < 500 || definiteCodes[ae.Code] {
			return Fail, ae.Code
		}
		return Info, ae.Code
	}
	if !write {
		return Fail, "transport"
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" || errors.Is(err, syscall.ECONNREFUSED) {
		return Fail, "dial"
	}
	return Info, "transport"
}

// registerStep: reads, blind writes and compare-and-set writes on a few hot keys.
func registerStep(ctx context.Context, w *worker) {
	key := w.registerKey(w.rng.IntN(w.cfg.Keys))
	switch r := w.rng.IntN(10); {
	case r < 5:
		op := w.exec(ctx, Op{Workload: WRegister, F: "read", Key: key}, false, func(ctx context.Context, op *Op) error {
			s, err := w.cl.Get(ctx, key, client.Selector{})
			if client.IsCode(err, "not_found") {
				return nil // found=false: the register is still empty
			}
			if err != nil {
				return err
			}
			op.Found, op.Version, op.VersionID, op.Value, op.Index = true, s.Version, s.VersionID, string(s.Value), s.Index
			return nil
		})
		if op.Type == OK {
			w.seen[key] = op.Version
		}
	case r < 7:
		v := w.newValue()
		w.exec(ctx, Op{Workload: WRegister, F: "write", Key: key, Value: v}, true, func(ctx context.Context, op *Op) error {
			res, err := w.cl.Put(ctx, key, []byte(v), client.PutOptions{})
			if err == nil {
				op.Version, op.VersionID, op.Index = res.Version, res.VersionID, res.Index
			}
			return err
		})
	default:
		v := w.newValue()
		exp := w.seen[key]
		op := w.exec(ctx, Op{Workload: WRegister, F: "cas", Key: key, Value: v, Expect: &exp}, true, func(ctx context.Context, op *Op) error {
			res, err := w.cl.Put(ctx, key, []byte(v), client.PutOptions{CAS: &exp})
			if err == nil {
				op.Version, op.VersionID, op.Index = res.Version, res.VersionID, res.Index
			}
			return err
		})
		switch {
		case op.Type == OK:
			w.seen[key] = op.Version
		case op.Code == "cas_mismatch" && op.CurrentVersion != nil:
			w.seen[key] = *op.CurrentVersion
		}
	}
}

// versionsStep: writes, reads by state and version listings on a few keys.
func versionsStep(ctx context.Context, w *worker) {
	key := w.versionsKey(w.rng.IntN(2))
	switch r := w.rng.IntN(10); {
	case r < 4:
		v := w.newValue()
		w.exec(ctx, Op{Workload: WVersions, F: "write", Key: key, Value: v}, true, func(ctx context.Context, op *Op) error {
			res, err := w.cl.Put(ctx, key, []byte(v), client.PutOptions{})
			if err == nil {
				op.Version, op.VersionID, op.RespState, op.Index = res.Version, res.VersionID, res.State, res.Index
			}
			return err
		})
	case r < 7:
		state := "CURRENT"
		if r == 6 {
			state = "PREVIOUS"
		}
		w.exec(ctx, Op{Workload: WVersions, F: "read-state", Key: key, State: state}, false, func(ctx context.Context, op *Op) error {
			s, err := w.cl.Get(ctx, key, client.Selector{State: state})
			if client.IsCode(err, "not_found") {
				return nil
			}
			if err != nil {
				return err
			}
			op.Found, op.Version, op.VersionID, op.RespState, op.Value = true, s.Version, s.VersionID, s.State, string(s.Value)
			return nil
		})
	default:
		w.exec(ctx, Op{Workload: WVersions, F: "list", Key: key}, false, func(ctx context.Context, op *Op) error {
			vs, err := w.cl.Versions(ctx, key)
			if client.IsCode(err, "not_found") {
				return nil
			}
			if err != nil {
				return err
			}
			op.Found, op.Version = true, vs.CurrentVersion
			op.Listing = NewListing(versionInfos(vs), vs.CurrentVersion)
			return nil
		})
	}
}

// staleStep: reads with max_stale of the register keys.
func staleStep(ctx context.Context, w *worker) {
	key := w.registerKey(w.rng.IntN(w.cfg.Keys))
	ms := w.cfg.MaxStale
	w.exec(ctx, Op{Workload: WStale, F: "read-stale", Key: key, MaxStale: int64(ms)}, false, func(ctx context.Context, op *Op) error {
		s, err := w.cl.GetWith(ctx, key, client.Selector{}, client.ReadOptions{MaxStale: ms})
		if client.IsCode(err, "not_found") {
			return nil
		}
		if err != nil {
			return err
		}
		op.Found, op.Version, op.VersionID, op.Value, op.Index = true, s.Version, s.VersionID, string(s.Value), s.Index
		op.LastContactMS, op.StalenessMS = s.LastContact.Milliseconds(), s.Staleness.Milliseconds()
		return nil
	})
}

// auditStep: an access whose only purpose is its audit record (reads of a key of its own,
// sometimes denied: a path that does not exist). Every other workload's acknowledged
// operations are checked for audit records too.
func auditStep(ctx context.Context, w *worker) {
	g := w.gen()
	key := fmt.Sprintf("jepsen/audit/g%d/w%d", g, w.id)
	if w.auditGen != g || w.rng.IntN(5) == 0 {
		w.auditGen = g
		v := w.newValue()
		w.exec(ctx, Op{Workload: WAudit, F: "write", Key: key, Value: v}, true, func(ctx context.Context, op *Op) error {
			res, err := w.cl.Put(ctx, key, []byte(v), client.PutOptions{})
			if err == nil {
				op.Version, op.VersionID, op.Index = res.Version, res.VersionID, res.Index
			}
			return err
		})
		return
	}
	w.exec(ctx, Op{Workload: WAudit, F: "read", Key: key}, false, func(ctx context.Context, op *Op) error {
		s, err := w.cl.GetWith(ctx, key, client.Selector{}, client.ReadOptions{Stale: true})
		if err != nil {
			return err
		}
		op.Found, op.Version, op.VersionID, op.Value = true, s.Version, s.VersionID, string(s.Value)
		return nil
	})
}

// runWorker loops w's workload until ctx ends, pausing a little between operations.
func runWorker(ctx context.Context, w *worker) {
	for ctx.Err() == nil {
		w.step(ctx, w)
		select {
		case <-ctx.Done():
		case <-time.After(w.cfg.Think + time.Duration(w.rng.Int64N(int64(w.cfg.Think)+1))):
		}
	}
}
