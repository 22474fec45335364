package fsm_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/keyward/keyward/fsm"
)

func setPolicy(t *testing.T, f *fsm.FSM, secretID string) {
	t.Helper()
	mustOK(t, f, fsm.CmdPutRotationPolicy, fsm.PutRotationPolicy{Policy: fsm.RotationPolicy{
		ID: "pol-" + secretID, SecretID: secretID, Schedule: "1h", Rotator: "random", NextAt: baseTime + 100,
	}, By: "alice", At: baseTime})
}

func pendingCmd(secretID string, seq, expect uint64) *fsm.PutPendingVersion {
	return &fsm.PutPendingVersion{SecretID: secretID, Seq: seq, Expect: expect,
		VersionID: fmt.Sprintf("%s-v%d", secretID, expect+1), Ciphertext: []byte("ct-pending"), WrappedKey: []byte("wk-pending"),
		KMSKeyID: "local:key-1", KMSProvider: "local", By: "system:rotation", At: baseTime + 10}
}

// stateCounts returns how many versions of a secret are in each state.
func stateCounts(st *fsm.State, id string) map[fsm.VersionState]int {
	m := map[fsm.VersionState]int{}
	for _, v := range st.Versions(id) {
		m[v.State]++
	}
	return m
}

func versionState(t *testing.T, st *fsm.State, id string, n uint64) fsm.VersionState {
	t.Helper()
	v, ok := st.Version(id, n)
	if !ok {
		t.Fatalf("version %d missing", n)
	}
	return v.State
}

func TestRotationProtocolSteps(t *testing.T) {
	f := fsm.New(nil)
	putN(t, f, "s1", "app/db", 2) // v1 PREVIOUS, v2 CURRENT
	setPolicy(t, f, "s1")
	st := f.State()
	if sec, _ := st.SecretByID("s1"); sec.RotationPolicyID != "pol-s1" {
		t.Fatalf("secret rotation policy id = %q", sec.RotationPolicyID)
	}
	if p, _ := st.RotationPolicy("s1"); p.Grace != fsm.DefaultRotationGrace || !p.Due(baseTime+100) || p.Due(baseTime+99) {
		t.Fatalf("policy = %+v", p)
	}

	// Wrong sequence numbers and steps are refused without changes.
	mustFail(t, f, fsm.CmdStartRotation, fsm.StartRotation{SecretID: "s1", Seq: 2, RotationID: "r1", At: baseTime + 1}, fsm.ErrRotationStep)
	mustOK(t, f, fsm.CmdStartRotation, fsm.StartRotation{SecretID: "s1", Seq: 1, RotationID: "r1", Trigger: fsm.TriggerSchedule, At: baseTime + 1})
	mustFail(t, f, fsm.CmdStartRotation, fsm.StartRotation{SecretID: "s1", Seq: 2, RotationID: "r2", At: baseTime + 2}, fsm.ErrRotationStep)
	mustFail(t, f, fsm.CmdPromoteRotation, fsm.PromoteRotation{SecretID: "s1", Seq: 1, At: baseTime + 3}, fsm.ErrRotationStep)
	mustFail(t, f, fsm.CmdDeleteRotationPolicy, fsm.DeleteRotationPolicy{SecretID: "s1"}, fsm.ErrRotationBusy)

	// The value sealed for the wrong number conflicts.
	res := mustApply(t, f, fsm.CmdPutPendingVersion, pendingCmd("s1", 1, 1))
	if !errors.Is(res.Err, fsm.ErrConflict) {
		t.Fatalf("stale expect: %v", res.Err)
	}
	mustOK(t, f, fsm.CmdPutPendingVersion, pendingCmd("s1", 1, 2))
	// Repeating a step (a deposed leader, a re-proposal) changes nothing.
	mustFail(t, f, fsm.CmdPutPendingVersion, pendingCmd("s1", 1, 3), fsm.ErrRotationStep)
	st = f.State()
	sec, _ := st.SecretByID("s1")
	if sec.CurrentVersion != 2 || sec.LatestVersion != 3 || versionState(t, st, "s1", 3) != fsm.StatePending {
		t.Fatalf("after pending: %+v", sec)
	}
	// PENDING is never what a CURRENT read returns.
	if v, _ := st.NewestInState("s1", fsm.StateCurrent); v.Number != 2 {
		t.Fatalf("current = %d", v.Number)
	}

	mustOK(t, f, fsm.CmdRotationStep, fsm.RotationStepCmd{SecretID: "s1", Seq: 1, From: fsm.StepPending, To: fsm.StepApplied, At: baseTime + 11})
	mustFail(t, f, fsm.CmdRotationStep, fsm.RotationStepCmd{SecretID: "s1", Seq: 1, From: fsm.StepPending, To: fsm.StepApplied, At: baseTime + 11}, fsm.ErrRotationStep)
	// A failed attempt at testing is recorded with its retry time.
	mustOK(t, f, fsm.CmdRotationStep, fsm.RotationStepCmd{SecretID: "s1", Seq: 1, From: fsm.StepApplied, To: fsm.StepApplied, Error: "connection refused", RetryAt: baseTime + 50, At: baseTime + 12})
	if r, _ := f.State().Rotation("s1", 1); r.Attempt != 1 || r.RetryAt != baseTime+50 || r.Step != fsm.StepApplied {
		t.Fatalf("after failed attempt: %+v", r)
	}
	mustFail(t, f, fsm.CmdRotationStep, fsm.RotationStepCmd{SecretID: "s1", Seq: 1, From: fsm.StepApplied, To: fsm.StepFinished, At: baseTime + 13}, fsm.ErrInvalid)
	mustOK(t, f, fsm.CmdRotationStep, fsm.RotationStepCmd{SecretID: "s1", Seq: 1, From: fsm.StepApplied, To: fsm.StepTested, At: baseTime + 13})
	if r, _ := f.State().Rotation("s1", 1); r.Attempt != 0 || r.Error != "" {
		t.Fatalf("a new step clears the attempts: %+v", r)
	}

	mustOK(t, f, fsm.CmdPromoteRotation, fsm.PromoteRotation{SecretID: "s1", Seq: 1, GraceUntil: baseTime + 1000, At: baseTime + 14})
	mustFail(t, f, fsm.CmdPromoteRotation, fsm.PromoteRotation{SecretID: "s1", Seq: 1, GraceUntil: baseTime + 1000, At: baseTime + 14}, fsm.ErrRotationStep)
	st = f.State()
	sec, _ = st.SecretByID("s1")
	if sec.CurrentVersion != 3 || sec.PreviousVersion != 2 {
		t.Fatalf("after promote: %+v", sec)
	}
	if got := stateCounts(st, "s1"); got[fsm.StateCurrent] != 1 || got[fsm.StatePrevious] != 1 || got[fsm.StateDeprecated] != 1 || got[fsm.StatePending] != 0 {
		t.Fatalf("states after promote: %v", got)
	}
	if v, _ := st.Version("s1", 2); v.ExpiresAt != baseTime+1000 {
		t.Fatalf("old version expires at %d", v.ExpiresAt)
	}
	// Failing is only possible before promotion.
	mustFail(t, f, fsm.CmdFailRotation, fsm.FailRotation{SecretID: "s1", Seq: 1, Error: "x", At: baseTime + 15}, fsm.ErrRotationStep)
	mustFail(t, f, fsm.CmdCompleteRotation, fsm.CompleteRotation{SecretID: "s1", Seq: 1, At: baseTime + 15}, fsm.ErrRotationStep)
	mustOK(t, f, fsm.CmdRotationStep, fsm.RotationStepCmd{SecretID: "s1", Seq: 1, From: fsm.StepPromoted, To: fsm.StepFinished, At: baseTime + 16})
	mustOK(t, f, fsm.CmdCompleteRotation, fsm.CompleteRotation{SecretID: "s1", Seq: 1, NextAt: baseTime + 5000, At: baseTime + 1001})
	mustFail(t, f, fsm.CmdCompleteRotation, fsm.CompleteRotation{SecretID: "s1", Seq: 1, At: baseTime + 1002}, fsm.ErrRotationStep)

	st = f.State()
	sec, _ = st.SecretByID("s1")
	if sec.CurrentVersion != 3 || sec.PreviousVersion != 0 || versionState(t, st, "s1", 2) != fsm.StateDeprecated {
		t.Fatalf("after complete: %+v", sec)
	}
	p, _ := st.RotationPolicy("s1")
	r, _ := st.Rotation("s1", 1)
	if p.Active != 0 || p.LastSeq != 1 || p.LastOutcome != fsm.OutcomeSucceeded || p.NextAt != baseTime+5000 {
		t.Fatalf("policy after complete: %+v", p)
	}
	if r.Outcome != fsm.OutcomeSucceeded || r.Step != fsm.StepCompleted || r.OldVersion != 2 || r.NewVersion != 3 {
		t.Fatalf("rotation after complete: %+v", r)
	}
	var steps []fsm.RotationStep
	for _, e := range r.Events {
		steps = append(steps, e.Step)
	}
	if fmt.Sprint(steps) != "[started pending applied applied tested promoted finished completed]" {
		t.Fatalf("events %v", steps)
	}
	// A write after the rotation behaves as before.
	put(t, f, "s1", "app/db")
	checkVersionInvariants(t, f.State(), "s1")
}

func TestRotationFailureDiscardsPending(t *testing.T) {
	f := fsm.New(nil)
	putN(t, f, "s1", "app/db", 1)
	setPolicy(t, f, "s1")
	mustOK(t, f, fsm.CmdStartRotation, fsm.StartRotation{SecretID: "s1", Seq: 1, RotationID: "r1", Trigger: fsm.TriggerManual, At: baseTime + 1})
	mustOK(t, f, fsm.CmdPutPendingVersion, pendingCmd("s1", 1, 1))
	mustOK(t, f, fsm.CmdRotationStep, fsm.RotationStepCmd{SecretID: "s1", Seq: 1, From: fsm.StepPending, To: fsm.StepApplied, At: baseTime + 11})
	mustOK(t, f, fsm.CmdFailRotation, fsm.FailRotation{SecretID: "s1", Seq: 1, Error: "test: password authentication failed", NextAt: baseTime + 99, At: baseTime + 20})
	st := f.State()
	sec, _ := st.SecretByID("s1")
	v2, _ := st.Version("s1", 2)
	if sec.CurrentVersion != 1 || sec.LatestVersion != 2 || v2.State != fsm.StateDeprecated || !v2.Destroyed {
		t.Fatalf("after fail: %+v %+v", sec, v2)
	}
	p, _ := st.RotationPolicy("s1")
	r, _ := st.Rotation("s1", 1)
	if p.Active != 0 || p.LastOutcome != fsm.OutcomeFailed || r.Outcome != fsm.OutcomeFailed || r.Error == "" || r.Step != fsm.StepFailed {
		t.Fatalf("policy %+v rotation %+v", p, r)
	}
	// The next rotation numbers versions after the discarded one.
	mustOK(t, f, fsm.CmdStartRotation, fsm.StartRotation{SecretID: "s1", Seq: 2, RotationID: "r2", Trigger: fsm.TriggerSchedule, At: baseTime + 30})
	mustOK(t, f, fsm.CmdPutPendingVersion, pendingCmd("s1", 2, 2))
	if got := f.State().Rotations("s1"); len(got) != 2 || got[0].Seq != 2 || got[1].Seq != 1 {
		t.Fatalf("history %+v", got)
	}
}

func TestRotationPromoteRefusedAfterConcurrentWrite(t *testing.T) {
	f := fsm.New(nil)
	putN(t, f, "s1", "app/db", 1)
	setPolicy(t, f, "s1")
	mustOK(t, f, fsm.CmdStartRotation, fsm.StartRotation{SecretID: "s1", Seq: 1, RotationID: "r1", At: baseTime + 1})
	mustOK(t, f, fsm.CmdPutPendingVersion, pendingCmd("s1", 1, 1))
	mustOK(t, f, fsm.CmdRotationStep, fsm.RotationStepCmd{SecretID: "s1", Seq: 1, From: fsm.StepPending, To: fsm.StepApplied, At: baseTime + 11})
	mustOK(t, f, fsm.CmdRotationStep, fsm.RotationStepCmd{SecretID: "s1", Seq: 1, From: fsm.StepApplied, To: fsm.StepTested, At: baseTime + 12})
	put(t, f, "s1", "app/db") // a user writes v3 during the rotation
	res := mustApply(t, f, fsm.CmdPromoteRotation, fsm.PromoteRotation{SecretID: "s1", Seq: 1, At: baseTime + 13})
	if !errors.Is(res.Err, fsm.ErrConflict) {
		t.Fatalf("promote over a newer write: %v", res.Err)
	}
	mustOK(t, f, fsm.CmdFailRotation, fsm.FailRotation{SecretID: "s1", Seq: 1, Error: "written during rotation", At: baseTime + 14})
	if sec, _ := f.State().SecretByID("s1"); sec.CurrentVersion != 3 {
		t.Fatalf("current = %d", sec.CurrentVersion)
	}
}

func TestRotateNowAndPolicyLifecycle(t *testing.T) {
	f := fsm.New(nil)
	put(t, f, "s1", "app/db")
	mustFail(t, f, fsm.CmdRotateNow, fsm.RotateNow{SecretID: "s1", At: baseTime}, fsm.ErrNotFound)
	mustFail(t, f, fsm.CmdPutRotationPolicy, fsm.PutRotationPolicy{Policy: fsm.RotationPolicy{ID: "p", SecretID: "nope", Schedule: "1h", Rotator: "random"}}, fsm.ErrNotFound)
	mustFail(t, f, fsm.CmdPutRotationPolicy, fsm.PutRotationPolicy{Policy: fsm.RotationPolicy{ID: "p", SecretID: "s1", Rotator: "random"}}, fsm.ErrInvalid)
	setPolicy(t, f, "s1")
	res := mustOK(t, f, fsm.CmdRotateNow, fsm.RotateNow{SecretID: "s1", By: "USER/bob", At: baseTime + 5})
	if res.RotationSeq != 1 {
		t.Fatalf("rotate now seq = %d", res.RotationSeq)
	}
	if p, _ := f.State().RotationPolicy("s1"); !p.Due(0) || p.ManualBy != "USER/bob" {
		t.Fatalf("policy %+v", p)
	}
	mustOK(t, f, fsm.CmdStartRotation, fsm.StartRotation{SecretID: "s1", Seq: 1, RotationID: "r1", Trigger: fsm.TriggerManual, By: "USER/bob", At: baseTime + 6})
	if p, _ := f.State().RotationPolicy("s1"); p.ManualAt != 0 || p.Due(baseTime+1e12) {
		t.Fatalf("a started manual rotation clears the request: %+v", p)
	}
	// Redefining the policy keeps its bookkeeping.
	mustOK(t, f, fsm.CmdPutRotationPolicy, fsm.PutRotationPolicy{Policy: fsm.RotationPolicy{ID: "other", SecretID: "s1", Schedule: "0 3 * * *", Rotator: "random", Grace: 5e9}, At: baseTime + 7})
	p, _ := f.State().RotationPolicy("s1")
	if p.ID != "pol-s1" || p.Active != 1 || p.Grace != 5e9 || p.Schedule != "0 3 * * *" {
		t.Fatalf("redefined policy %+v", p)
	}
	// Snapshots carry policies and rotations.
	var buf bytes.Buffer
	if err := fsm.WriteSnapshot(&buf, f.State()); err != nil {
		t.Fatal(err)
	}
	st, err := fsm.ReadSnapshot(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := st.Rotation("s1", 1); !ok || r.ID != "r1" {
		t.Fatalf("restored rotation %+v", r)
	}
	if rp, ok := st.RotationPolicy("s1"); !ok || rp.Active != 1 {
		t.Fatalf("restored policy %+v", rp)
	}
	// A forced delete (the runner, after a purge) removes policy and history.
	mustOK(t, f, fsm.CmdPurgeSecret, fsm.PurgeSecret{SecretID: "s1"})
	mustOK(t, f, fsm.CmdDeleteRotationPolicy, fsm.DeleteRotationPolicy{SecretID: "s1", Force: true})
	if _, ok := f.State().RotationPolicy("s1"); ok || len(f.State().Rotations("s1")) != 0 {
		t.Fatal("policy or history left after forced delete")
	}
}

func TestRotationResultCrossesTheWire(t *testing.T) {
	f := fsm.New(nil)
	put(t, f, "s1", "app/db")
	setPolicy(t, f, "s1")
	res := mustOK(t, f, fsm.CmdRotateNow, fsm.RotateNow{SecretID: "s1", At: baseTime})
	b, err := fsm.MarshalResponse(res)
	if err != nil {
		t.Fatal(err)
	}
	back, err := fsm.UnmarshalResponse(b)
	if err != nil {
		t.Fatal(err)
	}
	if back.(*fsm.Result).RotationSeq != 1 {
		t.Fatalf("rotation seq lost: %+v", back)
	}
	res = mustApply(t, f, fsm.CmdDeleteRotationPolicy, fsm.DeleteRotationPolicy{SecretID: "nope"})
	mustOK(t, f, fsm.CmdStartRotation, fsm.StartRotation{SecretID: "s1", Seq: 1, RotationID: "r1", At: baseTime + 1})
	res = mustApply(t, f, fsm.CmdDeleteRotationPolicy, fsm.DeleteRotationPolicy{SecretID: "s1"})
	b, _ = fsm.MarshalResponse(res)
	back, _ = fsm.UnmarshalResponse(b)
	if !errors.Is(back.(*fsm.Result).Err, fsm.ErrRotationBusy) {
		t.Fatalf("busy error lost: %v", back.(*fsm.Result).Err)
	}
}

// TestRotationApplyIsDeterministic: two replicas applying the same rotation commands (with
// refused repeats among them) reach byte-identical snapshots.
func TestRotationApplyIsDeterministic(t *testing.T) {
	entries := [][]byte{
		fsm.MustEncode(fsm.CmdPutVersion, putCmd("s1", "app/db", 0)),
		fsm.MustEncode(fsm.CmdPutRotationPolicy, fsm.PutRotationPolicy{Policy: fsm.RotationPolicy{ID: "p1", SecretID: "s1", Schedule: "1h", Rotator: "random"}, At: baseTime}),
		fsm.MustEncode(fsm.CmdRotateNow, fsm.RotateNow{SecretID: "s1", By: "USER/a", At: baseTime + 1}),
		fsm.MustEncode(fsm.CmdStartRotation, fsm.StartRotation{SecretID: "s1", Seq: 1, RotationID: "r1", Trigger: fsm.TriggerManual, At: baseTime + 2}),
		fsm.MustEncode(fsm.CmdPutPendingVersion, pendingCmd("s1", 1, 1)),
		fsm.MustEncode(fsm.CmdPutPendingVersion, pendingCmd("s1", 1, 1)), // refused repeat
		fsm.MustEncode(fsm.CmdRotationStep, fsm.RotationStepCmd{SecretID: "s1", Seq: 1, From: fsm.StepPending, To: fsm.StepApplied, At: baseTime + 3}),
		fsm.MustEncode(fsm.CmdRotationStep, fsm.RotationStepCmd{SecretID: "s1", Seq: 1, From: fsm.StepApplied, To: fsm.StepApplied, Error: "x", RetryAt: baseTime + 9, At: baseTime + 4}),
		fsm.MustEncode(fsm.CmdRotationStep, fsm.RotationStepCmd{SecretID: "s1", Seq: 1, From: fsm.StepApplied, To: fsm.StepTested, At: baseTime + 10}),
		fsm.MustEncode(fsm.CmdPromoteRotation, fsm.PromoteRotation{SecretID: "s1", Seq: 1, GraceUntil: baseTime + 100, At: baseTime + 11}),
		fsm.MustEncode(fsm.CmdRotationStep, fsm.RotationStepCmd{SecretID: "s1", Seq: 1, From: fsm.StepPromoted, To: fsm.StepFinished, At: baseTime + 12}),
		fsm.MustEncode(fsm.CmdCompleteRotation, fsm.CompleteRotation{SecretID: "s1", Seq: 1, NextAt: baseTime + 5000, At: baseTime + 101}),
		fsm.MustEncode(fsm.CmdStartRotation, fsm.StartRotation{SecretID: "s1", Seq: 2, RotationID: "r2", Trigger: fsm.TriggerSchedule, At: baseTime + 5000}),
		fsm.MustEncode(fsm.CmdFailRotation, fsm.FailRotation{SecretID: "s1", Seq: 2, Error: "no", NextAt: baseTime + 9000, At: baseTime + 5001}),
	}
	var snaps [2][]byte
	for i := range snaps {
		f := fsm.New(nil)
		for n, e := range entries {
			if _, err := f.ApplyCommand(uint64(n+1), e); err != nil {
				t.Fatal(err)
			}
		}
		snaps[i] = snapshotBytes(t, f.State())
	}
	if !bytes.Equal(snaps[0], snaps[1]) {
		t.Fatal("replicas diverged")
	}
}
