package rotation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/keyward/keyward/fsm"
)

// Store is what the runner needs from the secret service; store.Service implements it. Every
// call acts as the rotation's system principal and is audited.
type Store interface {
	SystemState() *fsm.State
	SystemReadCurrent(ctx context.Context, path string) ([]byte, error)
	SystemReadVersion(ctx context.Context, secretID string, n uint64) ([]byte, error)
	// ProposePending seals value for the secret's next version and proposes it as the
	// rotation's PENDING version.
	ProposePending(ctx context.Context, secretID string, seq uint64, value []byte) (*fsm.Result, error)
	ProposeRotation(ctx context.Context, t fsm.CommandType, payload any) (*fsm.Result, error)
	AuditRotation(ctx context.Context, action string, sec *fsm.Secret, versionID string, stepErr error) error
	PurgeDeleted(ctx context.Context, sec *fsm.Secret) error
}

// Config configures a Runner. Zero durations take the defaults in brackets.
type Config struct {
	Store Store
	// Leader reports whether this node is the leader, ready to propose (cluster.Node.LeaderReady).
	Leader   func() bool
	Rotators map[string]Factory
	NodeID   string
	Now      func() time.Time // [time.Now]
	NewID    func() string    // [random UUIDs]
	Tick     time.Duration    // how often the leader looks for due work [250ms]
	// MaxAttempts is how many times a step before promotion is tried before the rotation
	// fails [3]; Backoff doubles after each failed attempt, up to MaxBackoff [1s, 1m].
	MaxAttempts int
	Backoff     time.Duration
	MaxBackoff  time.Duration
	// RecoveryWindow > 0: soft-deleted secrets are purged that long after their deletion.
	RecoveryWindow time.Duration
	PurgeEvery     time.Duration // how often deleted secrets are scanned [10s]
	// TestHookDir (tests only): when the runner has recorded step S and a file "pause-at-S"
	// exists there, it renames it to "paused-at-S.<node id>" and stops working until it
	// loses leadership, so a test can kill the leader at that step boundary.
	TestHookDir string
	Metrics     *Metrics
	Log         *slog.Logger
}

// Runner runs due rotations, their timed transitions and the purge of expired soft-deleted
// secrets, while this node is the leader.
type Runner struct {
	c Config

	mu        sync.Mutex
	inflight  map[string]bool // secret ids a worker is driving
	wg        sync.WaitGroup
	lastPurge time.Time
}

// NewRunner returns a runner; Run starts it.
func NewRunner(c Config) *Runner {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.NewID == nil {
		c.NewID = uuid.NewString
	}
	if c.Tick <= 0 {
		c.Tick = 250 * time.Millisecond
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 3
	}
	if c.Backoff <= 0 {
		c.Backoff = time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = time.Minute
	}
	if c.PurgeEvery <= 0 {
		c.PurgeEvery = 10 * time.Second
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics()
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	c.Log = c.Log.With("component", "rotation")
	return &Runner{c: c, inflight: map[string]bool{}}
}

// Run watches leadership until ctx ends: the job loop starts when this node becomes the
// (ready) leader and is cancelled as soon as it is not.
func (r *Runner) Run(ctx context.Context) {
	t := time.NewTicker(r.c.Tick)
	defer t.Stop()
	for {
		if r.c.Leader() {
			r.lead(ctx, t)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// lead runs passes until this node is no longer the leader or ctx ends, then cancels its
// workers and waits for them.
func (r *Runner) lead(ctx context.Context, t *time.Ticker) {
	lctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		r.wg.Wait()
		r.c.Metrics.leading.Set(0)
		r.c.Log.Info("rotation runner stopped")
	}()
	r.c.Metrics.leading.Set(1)
	r.c.Log.Info("rotation runner started: this node leads")
	for {
		r.Pass(lctx, false)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !r.c.Leader() {
			return
		}
	}
}

// Pass looks once for due work and starts a worker per secret that has some. With wait, it
// returns when those workers are idle again (tests drive the runner this way with their own
// clock).
func (r *Runner) Pass(ctx context.Context, wait bool) {
	st := r.c.Store.SystemState()
	now := r.c.Now()
	var due []string
	st.RotationPolicies(func(p *fsm.RotationPolicy) bool {
		if r.hasWork(st, p, now.UnixNano()) {
			due = append(due, p.SecretID)
		}
		return true
	})
	var wg sync.WaitGroup
	for _, id := range due {
		r.mu.Lock()
		busy := r.inflight[id]
		r.inflight[id] = true
		r.mu.Unlock()
		if busy {
			continue
		}
		wg.Add(1)
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer wg.Done()
			defer func() {
				r.mu.Lock()
				delete(r.inflight, id)
				r.mu.Unlock()
			}()
			r.drive(ctx, id)
		}()
	}
	if r.c.RecoveryWindow > 0 && now.Sub(r.lastPurge) >= r.c.PurgeEvery {
		r.lastPurge = now
		r.purge(ctx, st, now)
	}
	if wait {
		wg.Wait()
	}
}

// hasWork reports whether a policy has a step to take now.
func (r *Runner) hasWork(st *fsm.State, p *fsm.RotationPolicy, now int64) bool {
	sec, ok := st.SecretByID(p.SecretID)
	if !ok {
		return true // purged: drop the policy
	}
	if p.Active == 0 {
		return !sec.Deleted() && p.Due(now)
	}
	rot, ok := st.Rotation(p.SecretID, p.Active)
	if !ok || rot.RetryAt > now {
		return false
	}
	return rot.Step != fsm.StepFinished || rot.GraceUntil <= now
}

// purge removes soft-deleted secrets whose recovery window has ended.
func (r *Runner) purge(ctx context.Context, st *fsm.State, now time.Time) {
	limit := now.Add(-r.c.RecoveryWindow).UnixNano()
	var doomed []*fsm.Secret
	st.DeletedSecrets(func(s *fsm.Secret) bool {
		if s.DeletedAt <= limit {
			doomed = append(doomed, s)
		}
		return len(doomed) < 1000
	})
	for _, s := range doomed {
		if ctx.Err() != nil || !r.c.Leader() {
			return
		}
		if err := r.c.Store.PurgeDeleted(ctx, s); err != nil {
			r.c.Log.Warn("purge of an expired deleted secret failed", "path", s.Path, "err", err)
			continue
		}
		r.c.Metrics.purged.Inc()
		r.c.Log.Info("purged a deleted secret after its recovery window", "path", s.Path)
	}
}

// drive takes the steps of one secret's rotation until it has to wait (retry, grace period)
// or ends, or leadership is lost.
func (r *Runner) drive(ctx context.Context, secretID string) {
	for ctx.Err() == nil && r.c.Leader() {
		st := r.c.Store.SystemState()
		p, ok := st.RotationPolicy(secretID)
		if !ok {
			return
		}
		now := r.c.Now()
		if !r.hasWork(st, p, now.UnixNano()) {
			return
		}
		sec, ok := st.SecretByID(secretID)
		if !ok {
			if _, err := r.propose(ctx, fsm.CmdDeleteRotationPolicy, fsm.DeleteRotationPolicy{SecretID: secretID, Force: true}); err != nil {
				r.c.Log.Warn("dropping the policy of a purged secret", "secret_id", secretID, "err", err)
			}
			return
		}
		if p.Active == 0 {
			if err := r.start(ctx, p, sec, now); err != nil {
				r.c.Log.Warn("cannot start rotation", "path", sec.Path, "err", err)
				return
			}
			continue
		}
		rot, _ := st.Rotation(secretID, p.Active)
		if err := r.step(ctx, p, sec, rot); err != nil {
			if ctx.Err() != nil || errors.Is(err, errNotLeader) || !r.c.Leader() {
				return
			}
			if ferr := r.failed(ctx, p, sec, rot, err); ferr != nil {
				r.c.Log.Warn("cannot record a failed rotation step", "path", sec.Path, "step", rot.Step, "err", ferr)
				return
			}
		}
	}
}

// errNotLeader: this node stopped leading; its worker stops without recording anything.
var errNotLeader = errors.New("this node is no longer the leader")

// propose proposes a command; a business failure is returned as an error. A node that no
// longer leads proposes nothing (its commands would be forwarded to the new leader, whose FSM
// would refuse them anyway as not continuing the rotation's recorded step).
func (r *Runner) propose(ctx context.Context, t fsm.CommandType, payload any) (*fsm.Result, error) {
	if !r.c.Leader() {
		return nil, errNotLeader
	}
	res, err := r.c.Store.ProposeRotation(ctx, t, payload)
	if err != nil {
		return nil, err
	}
	if res.Err != nil {
		return res, res.Err
	}
	return res, nil
}

func (r *Runner) start(ctx context.Context, p *fsm.RotationPolicy, sec *fsm.Secret, now time.Time) error {
	trigger, by := fsm.TriggerSchedule, ""
	if p.ManualAt != 0 {
		trigger, by = fsm.TriggerManual, p.ManualBy
	}
	_, err := r.propose(ctx, fsm.CmdStartRotation, fsm.StartRotation{SecretID: sec.ID, Seq: p.LastSeq + 1,
		RotationID: r.c.NewID(), Trigger: trigger, By: by, At: now.UnixNano()})
	switch {
	case errors.Is(err, fsm.ErrRotationStep):
		return nil // another proposer started it: carry on with that one
	case errors.Is(err, errNotLeader):
		return err
	}
	r.count(ctx, "ROTATE_START", sec, "", fsm.StepStarted, err)
	if err == nil {
		r.c.Log.Info("rotation started", "path", sec.Path, "seq", p.LastSeq+1, "trigger", trigger)
		r.hook(ctx, fsm.StepStarted)
	}
	return err
}

// count audits and counts one step.
func (r *Runner) count(ctx context.Context, action string, sec *fsm.Secret, versionID string, step fsm.RotationStep, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	r.c.Metrics.steps.WithLabelValues(string(step), result).Inc()
	if aerr := r.c.Store.AuditRotation(ctx, action, sec, versionID, err); aerr != nil {
		r.c.Log.Error("rotation step not audited", "action", action, "path", sec.Path, "err", aerr)
	}
}

// hook is the test-only pause point after a recorded step (see Config.TestHookDir).
func (r *Runner) hook(ctx context.Context, step fsm.RotationStep) {
	if r.c.TestHookDir == "" {
		return
	}
	from := filepath.Join(r.c.TestHookDir, "pause-at-"+string(step))
	if os.Rename(from, filepath.Join(r.c.TestHookDir, "paused-at-"+string(step)+"."+r.c.NodeID)) != nil {
		return
	}
	r.c.Log.Warn("test hook: pausing the rotation runner", "step", step)
	<-ctx.Done()
}

// errAlreadyMoved: the command found the rotation already past its step (a re-proposal);
// the worker re-reads state and continues.
var errAlreadyMoved = errors.New("rotation moved on")

func (r *Runner) job(p *fsm.RotationPolicy, sec *fsm.Secret, rot *fsm.Rotation) *Job {
	return &Job{Path: sec.Path, SecretID: sec.ID, RotationID: rot.ID, Seq: rot.Seq, Settings: p.Settings,
		Refs: resolver{r.c.Store}}
}

type resolver struct{ s Store }

func (v resolver) Value(ctx context.Context, path string) ([]byte, error) {
	return v.s.SystemReadCurrent(ctx, path)
}

func (r *Runner) rotator(p *fsm.RotationPolicy) (Rotator, error) {
	f, ok := r.c.Rotators[p.Rotator]
	if !ok {
		return nil, fmt.Errorf("%w: unknown rotator %q", ErrInvalidPolicy, p.Rotator)
	}
	rot, _, err := f(p.Settings)
	return rot, err
}

// step takes the step after rot.Step and records it.
func (r *Runner) step(ctx context.Context, p *fsm.RotationPolicy, sec *fsm.Secret, rot *fsm.Rotation) error {
	rt, err := r.rotator(p)
	if err != nil {
		return err
	}
	j := r.job(p, sec, rot)
	now := r.c.Now().UnixNano()
	var next fsm.RotationStep
	switch rot.Step {
	case fsm.StepStarted:
		next = fsm.StepPending
		err = r.generate(ctx, rt, j, sec, rot)
	case fsm.StepPending:
		next = fsm.StepApplied
		err = r.withValue(ctx, sec.ID, rot.NewVersion, func(v []byte) error { return rt.Apply(ctx, j, v) })
		if err == nil {
			err = r.advance(ctx, rot, fsm.StepPending, fsm.StepApplied, now)
		}
		r.count(ctx, "ROTATE_APPLY", sec, "", next, err)
	case fsm.StepApplied:
		next = fsm.StepTested
		err = r.withValue(ctx, sec.ID, rot.NewVersion, func(v []byte) error { return rt.Test(ctx, j, v) })
		if err == nil {
			err = r.advance(ctx, rot, fsm.StepApplied, fsm.StepTested, now)
		}
		r.count(ctx, "ROTATE_TEST", sec, "", next, err)
	case fsm.StepTested:
		next = fsm.StepPromoted
		var res *fsm.Result
		res, err = r.propose(ctx, fsm.CmdPromoteRotation, fsm.PromoteRotation{SecretID: sec.ID, Seq: rot.Seq,
			GraceUntil: now + p.Grace, At: now})
		err = moved(err)
		var ce *fsm.ConflictError
		if errors.As(err, &ce) {
			err = permanent{fmt.Errorf("the secret was written during the rotation (CURRENT is now version %d)", ce.Current)}
		}
		vid := ""
		if res != nil && res.Version != nil {
			vid = res.Version.ID
		}
		r.count(ctx, "ROTATE_PROMOTE", sec, vid, next, err)
		if err == nil {
			r.c.Log.Info("rotation promoted", "path", sec.Path, "seq", rot.Seq, "version", rot.NewVersion)
		}
	case fsm.StepPromoted:
		next = fsm.StepFinished
		err = r.withValue(ctx, sec.ID, rot.NewVersion, func(v []byte) error { return rt.Finish(ctx, j, v) })
		if err == nil {
			err = r.advance(ctx, rot, fsm.StepPromoted, fsm.StepFinished, now)
		}
		r.count(ctx, "ROTATE_FINISH", sec, "", next, err)
	case fsm.StepFinished:
		next = fsm.StepCompleted
		err = r.revoke(ctx, rt, j, p, sec, rot, now)
		r.count(ctx, "ROTATE_REVOKE", sec, "", next, err)
		if err == nil {
			r.c.Metrics.rotations.WithLabelValues(fsm.OutcomeSucceeded).Inc()
			r.c.Log.Info("rotation completed", "path", sec.Path, "seq", rot.Seq)
		}
	default:
		return nil
	}
	if errors.Is(err, errAlreadyMoved) {
		return nil
	}
	if err == nil {
		r.hook(ctx, next)
	}
	return err
}

// moved turns "the rotation is past this step" into errAlreadyMoved.
func moved(err error) error {
	if errors.Is(err, fsm.ErrRotationStep) {
		return errAlreadyMoved
	}
	return err
}

func (r *Runner) advance(ctx context.Context, rot *fsm.Rotation, from, to fsm.RotationStep, now int64) error {
	_, err := r.propose(ctx, fsm.CmdRotationStep, fsm.RotationStepCmd{SecretID: rot.SecretID, Seq: rot.Seq, From: from, To: to, At: now})
	return moved(err)
}

// external runs one call to the target only while this node still leads, so a deposed
// leader's worker does not act on the target after a new leader may have moved on.
func (r *Runner) external(fn func() error) error {
	if !r.c.Leader() {
		return errNotLeader
	}
	return fn()
}

// withValue decrypts version n for fn, a call to the target, and clears it afterwards; like
// external, only while this node still leads.
func (r *Runner) withValue(ctx context.Context, secretID string, n uint64, fn func([]byte) error) error {
	if !r.c.Leader() {
		return errNotLeader
	}
	v, err := r.c.Store.SystemReadVersion(ctx, secretID, n)
	if err != nil {
		return fmt.Errorf("read version %d: %w", n, err)
	}
	defer clear(v)
	return fn(v)
}

func (r *Runner) generate(ctx context.Context, rt Rotator, j *Job, sec *fsm.Secret, rot *fsm.Rotation) error {
	if rot.OldVersion != 0 {
		cur, err := r.c.Store.SystemReadVersion(ctx, sec.ID, rot.OldVersion)
		if err != nil {
			return fmt.Errorf("read version %d: %w", rot.OldVersion, err)
		}
		defer clear(cur)
		j.Current = cur
	}
	var v []byte
	err := r.external(func() (err error) { v, err = rt.Generate(ctx, j); return err })
	if err != nil {
		r.count(ctx, "ROTATE_GENERATE", sec, "", fsm.StepPending, err)
		return fmt.Errorf("generate: %w", err)
	}
	defer clear(v)
	res, err := r.c.Store.ProposePending(ctx, sec.ID, rot.Seq, v)
	if err == nil && res.Err != nil {
		err = moved(res.Err)
	}
	vid := ""
	if err == nil && res.Version != nil {
		vid = res.Version.ID
	}
	if !errors.Is(err, errAlreadyMoved) {
		r.count(ctx, "ROTATE_GENERATE", sec, vid, fsm.StepPending, err)
	}
	return err
}

func (r *Runner) revoke(ctx context.Context, rt Rotator, j *Job, p *fsm.RotationPolicy, sec *fsm.Secret, rot *fsm.Rotation, now int64) error {
	var old []byte
	if rot.OldVersion != 0 {
		if v, err := r.c.Store.SystemReadVersion(ctx, sec.ID, rot.OldVersion); err == nil {
			old = v
			defer clear(v)
		}
	}
	err := r.withValue(ctx, sec.ID, rot.NewVersion, func(cur []byte) error { return rt.Revoke(ctx, j, old, cur) })
	if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	_, err = r.propose(ctx, fsm.CmdCompleteRotation, fsm.CompleteRotation{SecretID: sec.ID, Seq: rot.Seq,
		NextAt: r.nextAt(p, now), At: now})
	return moved(err)
}

// nextAt is the next scheduled rotation after now (0 if the schedule no longer parses).
func (r *Runner) nextAt(p *fsm.RotationPolicy, now int64) int64 {
	s, err := ParseSchedule(p.Schedule)
	if err != nil {
		return 0
	}
	return s.Next(time.Unix(0, now)).UnixNano()
}

// permanent marks an error that retrying cannot fix.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// maxErrorText bounds the error text recorded in a rotation.
const maxErrorText = 500

func errorText(err error) string {
	s := err.Error()
	if len(s) > maxErrorText {
		s = s[:maxErrorText]
	}
	return s
}

// failed records a failed step: before promotion a retry with backoff until MaxAttempts, then
// the rotation fails (PENDING discarded, CURRENT untouched); after promotion it retries with
// backoff until it succeeds.
func (r *Runner) failed(ctx context.Context, p *fsm.RotationPolicy, sec *fsm.Secret, rot *fsm.Rotation, stepErr error) error {
	now := r.c.Now()
	attempt := rot.Attempt + 1
	r.c.Log.Warn("rotation step failed", "path", sec.Path, "seq", rot.Seq, "after", rot.Step, "attempt", attempt, "err", stepErr)
	var perm permanent
	giveUp := rot.Step.BeforePromotion() && (attempt >= r.c.MaxAttempts || errors.As(stepErr, &perm) || errors.Is(stepErr, ErrInvalidPolicy))
	if !giveUp {
		backoff := r.c.Backoff << min(attempt-1, 20)
		if backoff > r.c.MaxBackoff || backoff <= 0 {
			backoff = r.c.MaxBackoff
		}
		_, err := r.propose(ctx, fsm.CmdRotationStep, fsm.RotationStepCmd{SecretID: sec.ID, Seq: rot.Seq, From: rot.Step,
			To: rot.Step, Error: errorText(stepErr), RetryAt: now.Add(backoff).UnixNano(), At: now.UnixNano()})
		return ignoreMoved(err)
	}
	// Read what Discard needs before the failure is recorded (it drops the pending version),
	// and undo Apply at the target only once the rotation is recorded failed: a rotation that
	// a new leader promoted meanwhile must keep its credential.
	var pending, current []byte
	if rot.NewVersion != 0 {
		pending, _ = r.c.Store.SystemReadVersion(ctx, sec.ID, rot.NewVersion)
		defer clear(pending)
		if rot.OldVersion != 0 {
			current, _ = r.c.Store.SystemReadVersion(ctx, sec.ID, rot.OldVersion)
			defer clear(current)
		}
	}
	_, err := r.propose(ctx, fsm.CmdFailRotation, fsm.FailRotation{SecretID: sec.ID, Seq: rot.Seq,
		Error: errorText(stepErr), NextAt: r.nextAt(p, now.UnixNano()), At: now.UnixNano()})
	if err != nil {
		return ignoreMoved(err)
	}
	r.c.Metrics.rotations.WithLabelValues(fsm.OutcomeFailed).Inc()
	r.count(ctx, "ROTATE_FAIL", sec, "", fsm.StepFailed, stepErr)
	r.c.Log.Warn("rotation failed: CURRENT unchanged", "path", sec.Path, "seq", rot.Seq, "err", stepErr)
	if pending != nil {
		if rt, err := r.rotator(p); err == nil {
			j := r.job(p, sec, rot)
			j.Current = current
			if err := r.external(func() error { return rt.Discard(ctx, j, pending) }); err != nil {
				r.c.Log.Warn("discarding the pending value at the target failed", "path", sec.Path, "err", err)
			}
		}
	}
	return nil
}

func ignoreMoved(err error) error {
	if errors.Is(err, fsm.ErrRotationStep) {
		return nil
	}
	return err
}
