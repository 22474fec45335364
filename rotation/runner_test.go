package rotation_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/cluster"
	"github.com/keyward/keyward/fsm"
	"github.com/keyward/keyward/kms"
	"github.com/keyward/keyward/rotation"
	"github.com/keyward/keyward/rotation/rotators"
	"github.com/keyward/keyward/store"
)

// clock is the injectable clock of these tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func (c *clock) Add(d time.Duration) { c.Set(c.Now().Add(d)) }

// env is a real one-node Raft cluster with the secret service and a runner on a test clock.
type env struct {
	svc    *store.Service
	api    *rotation.Service
	runner *rotation.Runner
	clock  *clock
	node   *cluster.Node
}

func newEnv(t *testing.T, start time.Time, extra map[string]rotation.Factory, tweak func(*rotation.Config)) *env {
	t.Helper()
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	machine := fsm.New(nil)
	node, err := cluster.Open(cluster.Config{NodeID: "n1", DataDir: dir, RaftAddr: addr, Bootstrap: true,
		FSM: machine, Noop: fsm.MustEncode(fsm.CmdNoop, fsm.Noop{}), Codec: fsm.Codec{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for !node.LeaderReady() {
		select {
		case <-ctx.Done():
			t.Fatal("no leader")
		case <-time.After(10 * time.Millisecond):
		}
	}
	local, err := kms.NewLocal(filepath.Join(dir, "kek.key"))
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: start}
	svc := store.New(store.Deps{Proposer: node, State: machine, Reads: node, Sealer: kms.NewEnvelope(local, kms.CacheOptions{}), Now: c.Now})
	if _, err := svc.Init(ctx, "admin", "", ""); err != nil {
		t.Fatal(err)
	}
	facs := rotators.All()
	for k, f := range extra {
		facs[k] = f
	}
	cfg := rotation.Config{Store: svc, Leader: node.LeaderReady, Rotators: facs, NodeID: "n1", Now: c.Now,
		Backoff: time.Second, MaxBackoff: 4 * time.Second, MaxAttempts: 3}
	if tweak != nil {
		tweak(&cfg)
	}
	return &env{svc: svc, api: rotation.NewService(svc, facs, c.Now), runner: rotation.NewRunner(cfg), clock: c, node: node}
}

func admin() context.Context {
	return store.WithCaller(context.Background(), store.Caller{Type: fsm.PrincipalUser, ID: "admin", Admin: true, Method: "token"})
}

func (e *env) put(t *testing.T, path, value string) {
	t.Helper()
	if _, err := e.svc.Put(admin(), store.PutInput{Path: path, Value: []byte(value)}); err != nil {
		t.Fatal(err)
	}
}

func (e *env) current(t *testing.T, path string) *store.Value {
	t.Helper()
	v, err := e.svc.Get(admin(), path, store.Selector{}, store.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (e *env) status(t *testing.T, path string) *store.RotationStatus {
	t.Helper()
	st, err := e.svc.RotationStatus(admin(), path, store.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// pass runs the runner once at the current test time and waits for its workers.
func (e *env) pass() { e.runner.Pass(context.Background(), true) }

var t0 = time.Date(2026, 3, 2, 2, 0, 0, 0, time.UTC)

func TestIntervalScheduleFiresWhenDue(t *testing.T) {
	e := newEnv(t, t0, nil, nil)
	e.put(t, "app/api-key", "initial")
	p, err := e.api.SetPolicy(admin(), "app/api-key", rotation.PolicyInput{Schedule: "1h", Grace: 30 * time.Second,
		Rotator: "random", Settings: json.RawMessage(`{"length":40,"alphabet":"hex"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if want := t0.Add(time.Hour).UnixNano(); p.NextAt != want {
		t.Fatalf("next at %v, want %v", time.Unix(0, p.NextAt).UTC(), t0.Add(time.Hour))
	}

	e.clock.Set(t0.Add(time.Hour - time.Second))
	e.pass()
	if st := e.status(t, "app/api-key"); st.Policy.LastSeq != 0 {
		t.Fatalf("rotated before due: %+v", st.Policy)
	}

	e.clock.Set(t0.Add(time.Hour))
	e.pass()
	st := e.status(t, "app/api-key")
	r := st.Rotations[0]
	if st.Policy.Active != 1 || r.Step != fsm.StepFinished || r.Trigger != fsm.TriggerSchedule {
		t.Fatalf("after the due pass: policy %+v rotation %+v", st.Policy, r)
	}
	cur := e.current(t, "app/api-key")
	if len(cur.Plaintext) != 40 || string(cur.Plaintext) == "initial" || cur.Version != 2 {
		t.Fatalf("CURRENT after promotion: version %d, %d bytes", cur.Version, len(cur.Plaintext))
	}
	prev, err := e.svc.Get(admin(), "app/api-key", store.Selector{State: fsm.StatePrevious}, store.ReadOptions{})
	if err != nil || string(prev.Plaintext) != "initial" {
		t.Fatalf("PREVIOUS during the grace period: %v", err)
	}

	// The grace period holds the old version PREVIOUS.
	e.clock.Add(29 * time.Second)
	e.pass()
	if st := e.status(t, "app/api-key"); st.Rotations[0].Step != fsm.StepFinished {
		t.Fatalf("completed before the grace ended: %+v", st.Rotations[0])
	}
	e.clock.Add(time.Second)
	e.pass()
	st = e.status(t, "app/api-key")
	r = st.Rotations[0]
	if r.Step != fsm.StepCompleted || r.Outcome != fsm.OutcomeSucceeded || st.Policy.Active != 0 {
		t.Fatalf("after the grace: %+v", r)
	}
	if want := e.clock.Now().Add(time.Hour).UnixNano(); st.Policy.NextAt != want {
		t.Fatalf("next at %v, want %v", time.Unix(0, st.Policy.NextAt).UTC(), time.Unix(0, want).UTC())
	}
	md, err := e.svc.Versions(admin(), "app/api-key", store.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if md.Versions[0].State != fsm.StateCurrent || md.Versions[1].State != fsm.StateDeprecated {
		t.Fatalf("states %v %v", md.Versions[0].State, md.Versions[1].State)
	}
	var steps []fsm.RotationStep
	for _, ev := range r.Events {
		steps = append(steps, ev.Step)
	}
	want := []fsm.RotationStep{fsm.StepStarted, fsm.StepPending, fsm.StepApplied, fsm.StepTested, fsm.StepPromoted, fsm.StepFinished, fsm.StepCompleted}
	if len(steps) != len(want) {
		t.Fatalf("steps %v", steps)
	}
	for i := range want {
		if steps[i] != want[i] {
			t.Fatalf("steps %v", steps)
		}
	}

	// The next interval fires again.
	e.clock.Set(time.Unix(0, st.Policy.NextAt))
	e.pass()
	if st := e.status(t, "app/api-key"); st.Policy.LastSeq != 2 {
		t.Fatalf("second rotation did not start: %+v", st.Policy)
	}
}

func TestCronScheduleFiresWhenDue(t *testing.T) {
	e := newEnv(t, t0, nil, nil) // Monday 02:00 UTC
	e.put(t, "app/token", "initial")
	p, err := e.api.SetPolicy(admin(), "app/token", rotation.PolicyInput{Schedule: "30 3 * * 1", Grace: time.Second, Rotator: "random"})
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 3, 2, 3, 30, 0, 0, time.UTC); p.NextAt != want.UnixNano() {
		t.Fatalf("next at %v, want %v", time.Unix(0, p.NextAt).UTC(), want)
	}
	e.clock.Set(time.Date(2026, 3, 2, 3, 29, 59, 0, time.UTC))
	e.pass()
	if e.status(t, "app/token").Policy.LastSeq != 0 {
		t.Fatal("cron rotation fired early")
	}
	e.clock.Set(time.Date(2026, 3, 2, 3, 30, 0, 0, time.UTC))
	e.pass()
	e.clock.Add(2 * time.Second)
	e.pass()
	st := e.status(t, "app/token")
	if st.Rotations[0].Outcome != fsm.OutcomeSucceeded {
		t.Fatalf("cron rotation: %+v", st.Rotations[0])
	}
	// Next Monday 03:30.
	if want := time.Date(2026, 3, 9, 3, 30, 0, 0, time.UTC); st.Policy.NextAt != want.UnixNano() {
		t.Fatalf("next at %v, want %v", time.Unix(0, st.Policy.NextAt).UTC(), want)
	}
}

// failingTest is a rotator whose test step always fails; it records what was discarded.
type failingTest struct {
	rotation.Rotator
	mu        sync.Mutex
	tests     int
	discarded []string
}

func (f *failingTest) Test(context.Context, *rotation.Job, []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tests++
	return errors.New("target refused the new credential")
}

func (f *failingTest) Discard(_ context.Context, _ *rotation.Job, v []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.discarded = append(f.discarded, string(v))
	return nil
}

func TestFailingTestStepLeavesCurrentAndFails(t *testing.T) {
	base, _, _ := rotators.NewRandom(nil)
	ft := &failingTest{Rotator: base}
	e := newEnv(t, t0, map[string]rotation.Factory{
		"failing": func(json.RawMessage) (rotation.Rotator, []string, error) { return ft, nil, nil },
	}, nil)
	e.put(t, "app/db", "v1")
	if _, err := e.api.SetPolicy(admin(), "app/db", rotation.PolicyInput{Schedule: "24h", Rotator: "failing"}); err != nil {
		t.Fatal(err)
	}
	seq, _, err := e.api.Now(admin(), "app/db", 0)
	if err != nil || seq != 1 {
		t.Fatalf("rotate now: %d %v", seq, err)
	}
	e.pass() // attempt 1 fails, retry in 1s
	r := e.status(t, "app/db").Rotations[0]
	if r.Trigger != fsm.TriggerManual || r.Step != fsm.StepApplied || r.Attempt != 1 || r.RetryAt != t0.Add(time.Second).UnixNano() {
		t.Fatalf("after attempt 1: %+v", r)
	}
	e.pass() // not yet due again
	if ft.tests != 1 {
		t.Fatalf("retried before the backoff: %d tests", ft.tests)
	}
	e.clock.Add(time.Second)
	e.pass() // attempt 2, retry in 2s
	e.clock.Add(2 * time.Second)
	e.pass() // attempt 3: give up
	st := e.status(t, "app/db")
	r = st.Rotations[0]
	if r.Outcome != fsm.OutcomeFailed || r.Step != fsm.StepFailed || st.Policy.LastOutcome != fsm.OutcomeFailed || st.Policy.Active != 0 {
		t.Fatalf("after attempt 3: %+v", r)
	}
	if ft.tests != 3 || len(ft.discarded) != 1 {
		t.Fatalf("%d tests, %d discards", ft.tests, len(ft.discarded))
	}
	cur := e.current(t, "app/db")
	if cur.Version != 1 || string(cur.Plaintext) != "v1" {
		t.Fatalf("CURRENT changed: version %d", cur.Version)
	}
	md, _ := e.svc.Versions(admin(), "app/db", store.ReadOptions{})
	if md.Versions[0].Number != 2 || md.Versions[0].State != fsm.StateDeprecated || !md.Versions[0].Destroyed {
		t.Fatalf("pending version not discarded: %+v", md.Versions[0])
	}
	// The failed rotation is not retried until the schedule says so.
	e.clock.Add(time.Hour)
	e.pass()
	if e.status(t, "app/db").Policy.LastSeq != 1 {
		t.Fatal("a failed rotation restarted before its schedule")
	}
}

func TestRunnerPurgesDeletedSecretsAfterRecoveryWindow(t *testing.T) {
	e := newEnv(t, t0, nil, func(c *rotation.Config) { c.RecoveryWindow = 24 * time.Hour; c.PurgeEvery = time.Nanosecond })
	e.put(t, "old/one", "x")
	e.put(t, "old/two", "y")
	if err := e.svc.Delete(admin(), "old/one", false); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(time.Hour)
	if err := e.svc.Delete(admin(), "old/two", false); err != nil {
		t.Fatal(err)
	}
	e.clock.Set(t0.Add(24*time.Hour + time.Minute))
	e.pass()
	st := e.svc.SystemState()
	if _, ok := st.SecretByPath("old/one"); ok {
		t.Fatal("old/one not purged after its recovery window")
	}
	if _, ok := st.SecretByPath("old/two"); !ok {
		t.Fatal("old/two purged before its recovery window")
	}
}

func TestPoliciesAreValidated(t *testing.T) {
	e := newEnv(t, t0, nil, nil)
	e.put(t, "app/x", "x")
	bad := []rotation.PolicyInput{
		{Schedule: "soon", Rotator: "random"},
		{Schedule: "100ms", Rotator: "random"},
		{Schedule: "61 * * * *", Rotator: "random"},
		{Schedule: "1h", Rotator: "nope"},
		{Schedule: "1h", Rotator: "random", Settings: json.RawMessage(`{"length":-1}`)},
		{Schedule: "1h", Rotator: "random", Settings: json.RawMessage(`{"lenght":12}`)},
		{Schedule: "1h", Rotator: "random", Grace: -time.Second},
		{Schedule: "1h", Rotator: "postgres", Settings: json.RawMessage(`{"connection":"db/admin","roles":["a"]}`)},
		{Schedule: "1h", Rotator: "webhook", Settings: json.RawMessage(`{"url":"ftp://x","hmac_key":"k"}`)},
	}
	for _, in := range bad {
		if _, err := e.api.SetPolicy(admin(), "app/x", in); !errors.Is(err, store.ErrInvalidArgument) {
			t.Errorf("%+v: %v, want invalid argument", in, err)
		}
	}
	if _, err := e.api.SetPolicy(admin(), "app/missing", rotation.PolicyInput{Schedule: "1h", Rotator: "random"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("missing secret: %v", err)
	}
	// A caller needs ROTATE on the secret and READ on what the settings reference.
	bob := store.WithCaller(context.Background(), store.Caller{Type: fsm.PrincipalUser, ID: "bob", Method: "token"})
	if _, err := e.api.SetPolicy(bob, "app/x", rotation.PolicyInput{Schedule: "1h", Rotator: "random"}); !errors.Is(err, store.ErrForbidden) {
		t.Errorf("bob without grants: %v", err)
	}
	if _, _, err := e.api.Now(bob, "app/x", 0); !errors.Is(err, store.ErrForbidden) {
		t.Errorf("bob rotate now: %v", err)
	}
	// With ROTATE on the secret bob may rotate it, but a policy that references a secret he
	// cannot read is refused.
	if _, err := e.svc.Grant(admin(), store.GrantInput{PrincipalType: fsm.PrincipalUser, PrincipalID: "bob",
		Actions: []fsm.Action{fsm.ActionRotate}, SecretPath: "app/x"}); err != nil {
		t.Fatal(err)
	}
	e.put(t, "db/admin", `{"host":"127.0.0.1","username":"a","password":"b"}`)
	pgPolicy := rotation.PolicyInput{Schedule: "1h", Rotator: "postgres", Settings: json.RawMessage(`{"connection":"db/admin","roles":["a","b"]}`)}
	if _, err := e.api.SetPolicy(bob, "app/x", pgPolicy); !errors.Is(err, store.ErrForbidden) {
		t.Errorf("bob referencing db/admin without READ: %v", err)
	}
	if _, err := e.api.SetPolicy(bob, "app/x", rotation.PolicyInput{Schedule: "1h", Rotator: "random"}); err != nil {
		t.Errorf("bob with ROTATE: %v", err)
	}
	if seq, _, err := e.api.Now(bob, "app/x", 0); err != nil || seq != 1 {
		t.Errorf("bob rotate now: %d %v", seq, err)
	}
	if _, err := e.svc.Grant(admin(), store.GrantInput{PrincipalType: fsm.PrincipalUser, PrincipalID: "bob",
		Actions: []fsm.Action{fsm.ActionRead}, SecretPath: "db/admin"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.api.SetPolicy(bob, "app/x", pgPolicy); err != nil {
		t.Errorf("bob referencing db/admin with READ: %v", err)
	}
	// A policy cannot be deleted while its rotation runs.
	e.pass()
	if err := e.api.DeletePolicy(admin(), "app/x"); !errors.Is(err, store.ErrRotationBusy) {
		t.Errorf("delete during a rotation: %v", err)
	}
}
