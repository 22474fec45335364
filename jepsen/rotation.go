package jepsen

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/keyward/keyward/api/client"
	"github.com/keyward/keyward/api/wire"
)

// The rotation workload: a few secrets rotate on a short schedule (the leader's runner
// starts rotations by itself, during faults too) while clients ask for rotations now, read
// CURRENT and list versions. Checks: version invariants hold throughout (PENDING versions
// included), CURRENT never goes back in time, every acknowledged rotation request is in the
// rotation history, and every rotation that succeeded produced exactly one version of its own
// that is in the final listing.

const rotationKeys = 2

func rotationKey(k int) string { return fmt.Sprintf("jepsen/rotation/k%d", k) }

// rotationSchedule is the interval of the scheduled rotations.
const rotationSchedule = "4s"

// setupRotation writes each rotation secret and gives it a policy with the random rotator.
func setupRotation(ctx context.Context, cl *client.Client, h *History) error {
	for k := 0; k < rotationKeys; k++ {
		key := rotationKey(k)
		var err error
		for try := 0; try < 50; try++ {
			var res *wire.WriteResponse
			inv := h.Now()
			if res, err = cl.Put(ctx, key, []byte("initial"), client.PutOptions{}); err == nil {
				h.Add(Op{Workload: WRotation, F: "write", Key: key, Value: "initial", Type: OK, Worker: -1,
					Version: res.Version, VersionID: res.VersionID, Invoke: inv, Complete: h.Now()})
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("rotation setup: write %s: %w", key, err)
		}
		for try := 0; try < 50; try++ {
			if _, err = cl.SetRotation(ctx, key, wire.RotationPolicyRequest{Schedule: rotationSchedule, Grace: "1s", Rotator: "random"}); err == nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("rotation setup: policy of %s: %w", key, err)
		}
	}
	return nil
}

// rotationStep: rotate now, read CURRENT, or list versions of a rotating secret.
func rotationStep(ctx context.Context, w *worker) {
	key := rotationKey(w.rng.IntN(rotationKeys))
	switch r := w.rng.IntN(10); {
	case r < 2:
		w.exec(ctx, Op{Workload: WRotation, F: "rotate", Key: key}, true, func(ctx context.Context, op *Op) error {
			res, err := w.cl.RotateNow(ctx, key, 0)
			if err == nil {
				op.Version = res.Seq // the rotation's number
			}
			return err
		})
	case r < 6:
		w.exec(ctx, Op{Workload: WRotation, F: "read-state", Key: key, State: "CURRENT"}, false, func(ctx context.Context, op *Op) error {
			s, err := w.cl.Get(ctx, key, client.Selector{State: "CURRENT"})
			if err != nil {
				return err
			}
			op.Found, op.Version, op.VersionID, op.RespState = true, s.Version, s.VersionID, s.State
			return nil
		})
	default:
		w.exec(ctx, Op{Workload: WRotation, F: "list", Key: key}, false, func(ctx context.Context, op *Op) error {
			vs, err := w.cl.Versions(ctx, key)
			if err != nil {
				return err
			}
			op.Found, op.Version = true, vs.CurrentVersion
			op.Listing = NewListing(versionInfos(vs), vs.CurrentVersion)
			return nil
		})
	}
}

// RotationRecord is what the final state keeps of one rotation.
type RotationRecord struct {
	Seq        uint64 `json:"seq"`
	Trigger    string `json:"trigger"`
	Step       string `json:"step"`
	Outcome    string `json:"outcome,omitempty"`
	OldVersion uint64 `json:"old_version,omitempty"`
	NewVersion uint64 `json:"new_version,omitempty"`
	Error      string `json:"error,omitempty"`
}

// readRotations stops scheduled rotations of the rotation secrets (their schedule becomes
// a day), waits until no rotation runs (the leader's runner finishes what it started once
// the cluster healed) and returns their histories.
func readRotations(ctx context.Context, cl *client.Client) (map[string][]RotationRecord, error) {
	out := map[string][]RotationRecord{}
	for k := 0; k < rotationKeys; k++ {
		key := rotationKey(k)
		var last error
		for {
			_, err := cl.SetRotation(ctx, key, wire.RotationPolicyRequest{Schedule: "24h", Grace: "1s", Rotator: "random"})
			if err == nil {
				var st *wire.RotationResponse
				if st, err = cl.Rotation(ctx, key); err == nil && st.Policy.ActiveSeq == 0 && !st.Policy.ManualRequested {
					break
				}
			}
			last = err
			if !sleepCtx(ctx, 500*time.Millisecond) {
				return out, fmt.Errorf("rotation of %s still running: %w (last error %v)", key, ctx.Err(), last)
			}
		}
		var hist *wire.RotationHistoryResponse
		for {
			var err error
			if hist, err = cl.RotationHistory(ctx, key); err == nil {
				break
			}
			if !sleepCtx(ctx, 500*time.Millisecond) {
				return out, fmt.Errorf("rotation history of %s: %w", key, err)
			}
		}
		for _, r := range hist.Rotations {
			out[key] = append(out[key], RotationRecord{Seq: r.Seq, Trigger: r.Trigger, Step: r.Step, Outcome: r.Outcome,
				OldVersion: r.OldVersion, NewVersion: r.NewVersion, Error: r.Error})
		}
		sort.Slice(out[key], func(i, j int) bool { return out[key][i].Seq < out[key][j].Seq })
	}
	return out, nil
}

// checkRotation: acknowledged rotation requests are in the history, succeeded rotations each
// made a distinct version that exists, and no rotation is left half done.
func checkRotation(r *Report, ops []Op, fin Final) {
	for key, recs := range fin.Rotations {
		if len(recs) == 0 {
			continue
		}
		bySeq := map[uint64]RotationRecord{}
		newVersion := map[uint64]uint64{}
		have := map[uint64]VersionInfo{}
		for _, v := range fin.Versions[key] {
			have[v.Version] = v
		}
		for _, rec := range recs {
			r.RotationChecks++
			bySeq[rec.Seq] = rec
			if rec.Outcome == "" {
				r.violate("rotation: %s rotation %d never ended (step %s)", key, rec.Seq, rec.Step)
			}
			if rec.Outcome != "succeeded" {
				continue
			}
			r.Rotations++
			if prev, dup := newVersion[rec.NewVersion]; dup {
				r.violate("rotation: %s rotations %d and %d both produced v%d", key, prev, rec.Seq, rec.NewVersion)
			}
			newVersion[rec.NewVersion] = rec.Seq
			if _, ok := have[rec.NewVersion]; !ok && rec.NewVersion != 0 {
				r.violate("rotation: %s rotation %d produced v%d, which is not in the final listing", key, rec.Seq, rec.NewVersion)
			}
		}
		oldest := recs[0].Seq
		for _, o := range ops {
			if o.Key != key || o.F != "rotate" || o.Type != OK || o.Version < oldest {
				continue
			}
			if _, ok := bySeq[o.Version]; !ok {
				r.violate("rotation: %s rotation %d was acknowledged (op %d at %.3fs) but is not in the history", key, o.Version, o.ID, secs(o.Complete))
			}
		}
	}
}

// checkMonotonic: linearizable reads of CURRENT never go back: a read that began after
// another ended sees the same version or a newer one.
func checkMonotonic(r *Report, ops []Op) {
	by := map[string][]Op{}
	for _, o := range ops {
		if o.Type == OK && o.F == "read-state" && o.State == "CURRENT" && o.Found {
			by[o.Key] = append(by[o.Key], o)
		}
	}
	for key, rs := range by {
		done := append([]Op(nil), rs...)
		sort.Slice(done, func(i, j int) bool { return done[i].Complete < done[j].Complete })
		best := make([]Op, len(done)) // best[i]: newest version among done[:i+1]
		for i, o := range done {
			best[i] = o
			if i > 0 && best[i-1].Version > o.Version {
				best[i] = best[i-1]
			}
		}
		for _, o := range rs {
			i := sort.Search(len(done), func(i int) bool { return done[i].Complete >= o.Invoke }) - 1
			if i >= 0 && best[i].Version > o.Version {
				r.violate("monotonic: %s CURRENT read on n%d at %.3fs (op %d) saw v%d, but op %d had seen v%d by %.3fs",
					key, o.Node+1, secs(o.Invoke), o.ID, o.Version, best[i].ID, best[i].Version, secs(best[i].Complete))
			}
		}
	}
}
