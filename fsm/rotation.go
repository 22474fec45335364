package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// Rotation: a policy per secret says when and how to rotate it; each run of the protocol is a
// Rotation record that moves through the steps below, one command per step. The leader's
// runner (package rotation) does the I/O between steps; Apply only checks that each command
// continues the rotation from the step it expects, so a command repeated by a deposed leader
// or re-proposed by a new one changes nothing twice.

// RotationStep is where a rotation stands. Each is recorded before the work of the next one
// starts.
type RotationStep string

// Rotation steps, in protocol order. Failed is the end of a rotation that failed before its
// promotion; Completed the end of a successful one.
const (
	StepStarted   RotationStep = "started"   // the rotation exists; no value yet
	StepPending   RotationStep = "pending"   // new value stored as a PENDING version
	StepApplied   RotationStep = "applied"   // new value set at the target
	StepTested    RotationStep = "tested"    // new value works at the target
	StepPromoted  RotationStep = "promoted"  // new value CURRENT, old one PREVIOUS until the grace ends
	StepFinished  RotationStep = "finished"  // the target was told of the promotion
	StepCompleted RotationStep = "completed" // old value revoked at the target and DEPRECATED
	StepFailed    RotationStep = "failed"    // gave up before promotion; CURRENT untouched
)

// Ended reports whether the step ends a rotation.
func (s RotationStep) Ended() bool { return s == StepCompleted || s == StepFailed }

// BeforePromotion reports whether a rotation at this step may still fail without changing
// what clients read.
func (s RotationStep) BeforePromotion() bool {
	switch s {
	case StepStarted, StepPending, StepApplied, StepTested:
		return true
	}
	return false
}

// Rotation outcomes.
const (
	OutcomeSucceeded = "succeeded"
	OutcomeFailed    = "failed"
)

// Rotation triggers.
const (
	TriggerSchedule = "schedule"
	TriggerManual   = "manual"
)

// DefaultRotationGrace is the grace period of a policy that does not set one: how long the
// old value stays valid after the new one is promoted.
const DefaultRotationGrace int64 = 60e9

// MaxRotationHistory is how many rotations are kept per secret; older records are dropped when
// a new rotation starts.
const MaxRotationHistory = 50

// RotationPolicy is the seed's rotation_policy_id target: how and when one secret is rotated,
// and the bookkeeping of its rotations. Settings never hold credentials, only references (paths
// of other secrets).
type RotationPolicy struct {
	ID        string          `json:"id"`
	SecretID  string          `json:"secret_id"`
	Schedule  string          `json:"schedule"` // Go duration ("24h") or 5-field cron expression (UTC)
	Grace     int64           `json:"grace"`    // nanoseconds
	Rotator   string          `json:"rotator"`
	Settings  json.RawMessage `json:"settings,omitempty"`
	CreatedAt int64           `json:"created_at"`
	CreatedBy string          `json:"created_by,omitempty"`
	UpdatedAt int64           `json:"updated_at"`

	// NextAt is when the next scheduled rotation is due (Unix ns); the proposer computes it.
	NextAt int64 `json:"next_at,omitempty"`
	// ManualAt/ManualBy: a `rotation now` request not yet started.
	ManualAt int64  `json:"manual_at,omitempty"`
	ManualBy string `json:"manual_by,omitempty"`
	// LastSeq numbers the newest rotation; Active is the running one (0: none).
	LastSeq     uint64 `json:"last_seq,omitempty"`
	Active      uint64 `json:"active,omitempty"`
	LastEndedAt int64  `json:"last_ended_at,omitempty"`
	LastOutcome string `json:"last_outcome,omitempty"`
}

// Due reports whether a new rotation should start at now.
func (p *RotationPolicy) Due(now int64) bool {
	return p.Active == 0 && (p.ManualAt != 0 || (p.NextAt != 0 && p.NextAt <= now))
}

// RotationEvent is one recorded step of a rotation (or a failed attempt at one).
type RotationEvent struct {
	Step    RotationStep `json:"step"`
	At      int64        `json:"at"`
	Attempt int          `json:"attempt,omitempty"`
	Error   string       `json:"error,omitempty"`
}

// Rotation is one run of the rotation protocol on a secret.
type Rotation struct {
	ID         string       `json:"id"`
	SecretID   string       `json:"secret_id"`
	Seq        uint64       `json:"seq"`
	Trigger    string       `json:"trigger"`
	By         string       `json:"by,omitempty"`
	Step       RotationStep `json:"step"`
	OldVersion uint64       `json:"old_version,omitempty"` // CURRENT when the rotation started
	NewVersion uint64       `json:"new_version,omitempty"` // the PENDING version, CURRENT once promoted
	// Attempt counts failed attempts at the step after Step; RetryAt is when to try again.
	Attempt    int             `json:"attempt,omitempty"`
	RetryAt    int64           `json:"retry_at,omitempty"`
	StartedAt  int64           `json:"started_at"`
	UpdatedAt  int64           `json:"updated_at"`
	PromotedAt int64           `json:"promoted_at,omitempty"`
	GraceUntil int64           `json:"grace_until,omitempty"`
	EndedAt    int64           `json:"ended_at,omitempty"`
	Outcome    string          `json:"outcome,omitempty"`
	Error      string          `json:"error,omitempty"`
	Events     []RotationEvent `json:"events,omitempty"`
}

// Errors of rotation commands.
var (
	// ErrRotationBusy: the secret has a running rotation (delete its policy after it ends).
	ErrRotationBusy = errors.New("a rotation is running")
	// ErrRotationStep: the command does not continue the rotation from the step it expects;
	// another proposer already moved it on (or it ended).
	ErrRotationStep = errors.New("rotation is not at the expected step")
)

// Rotation commands.
const (
	CmdPutRotationPolicy    CommandType = 70
	CmdDeleteRotationPolicy CommandType = 71
	CmdRotateNow            CommandType = 72
	CmdStartRotation        CommandType = 73
	CmdPutPendingVersion    CommandType = 74
	CmdRotationStep         CommandType = 75
	CmdPromoteRotation      CommandType = 76
	CmdCompleteRotation     CommandType = 77
	CmdFailRotation         CommandType = 78
)

// Object kinds of rotation.
const (
	KindRotationPolicy = "rotation_policy" // *RotationPolicy, key secret id
	KindRotation       = "rotation"        // *Rotation, key RotationKey(secret id, seq)
)

func init() {
	objectTypes[KindRotationPolicy] = func() any { return new(RotationPolicy) }
	objectTypes[KindRotation] = func() any { return new(Rotation) }
}

// RotationKey is the object key of a rotation: records of one secret sort by sequence.
func RotationKey(secretID string, seq uint64) string { return fmt.Sprintf("%s/%020d", secretID, seq) }

// PutRotationPolicy creates or replaces the rotation policy of a live secret, keeping its
// rotation bookkeeping.
type PutRotationPolicy struct {
	Policy RotationPolicy `json:"policy"` // ID, SecretID, Schedule, Grace, Rotator, Settings, NextAt
	By     string         `json:"by,omitempty"`
	At     int64          `json:"at"`
}

// DeleteRotationPolicy removes a secret's policy and its rotation history. Unless Force, it
// fails with ErrRotationBusy while a rotation runs; Force is for the runner cleaning up after a
// purged secret.
type DeleteRotationPolicy struct {
	SecretID string `json:"secret_id"`
	Force    bool   `json:"force,omitempty"`
}

// RotateNow asks for a rotation as soon as the leader's runner sees it. The result's
// RotationSeq is the sequence number that rotation will have.
type RotateNow struct {
	SecretID string `json:"secret_id"`
	By       string `json:"by,omitempty"`
	At       int64  `json:"at"`
}

// StartRotation begins rotation Seq (LastSeq+1) of a secret with no running rotation.
type StartRotation struct {
	SecretID   string `json:"secret_id"`
	Seq        uint64 `json:"seq"`
	RotationID string `json:"rotation_id"`
	Trigger    string `json:"trigger"`
	By         string `json:"by,omitempty"`
	At         int64  `json:"at"`
}

// PutPendingVersion stores the new value of rotation Seq as version Expect+1 in state PENDING.
// Like PutVersion, the value was sealed for exactly that number.
type PutPendingVersion struct {
	SecretID    string `json:"secret_id"`
	Seq         uint64 `json:"seq"`
	Expect      uint64 `json:"expect"`
	VersionID   string `json:"version_id"`
	Ciphertext  []byte `json:"-"`
	WrappedKey  []byte `json:"-"`
	KMSKeyID    string `json:"kms_key_id"`
	KMSProvider string `json:"kms_provider"`
	By          string `json:"by,omitempty"`
	At          int64  `json:"at"`
}

func (p *PutPendingVersion) blobs() [][]byte { return [][]byte{p.Ciphertext, p.WrappedKey} }

func (p *PutPendingVersion) setBlobs(b [][]byte) error {
	if len(b) != 2 {
		return fmt.Errorf("put pending version carries %d blobs, want 2", len(b))
	}
	p.Ciphertext, p.WrappedKey = b[0], b[1]
	return nil
}

// RotationStepCmd moves rotation Seq from step From to step To (pending→applied,
// applied→tested, promoted→finished), or, with To == From, records a failed attempt at the
// next step and when to retry it.
type RotationStepCmd struct {
	SecretID string       `json:"secret_id"`
	Seq      uint64       `json:"seq"`
	From     RotationStep `json:"from"`
	To       RotationStep `json:"to"`
	Error    string       `json:"error,omitempty"`
	RetryAt  int64        `json:"retry_at,omitempty"`
	At       int64        `json:"at"`
}

// PromoteRotation makes the PENDING version CURRENT in one step: the old CURRENT becomes
// PREVIOUS (valid until GraceUntil), an older PREVIOUS DEPRECATED. It fails with a
// ConflictError if the secret's CURRENT is no longer the one the rotation started from.
type PromoteRotation struct {
	SecretID   string `json:"secret_id"`
	Seq        uint64 `json:"seq"`
	GraceUntil int64  `json:"grace_until"`
	At         int64  `json:"at"`
}

// CompleteRotation ends a finished rotation after its grace period, once the old credential
// was revoked at the target: the old version becomes DEPRECATED. NextAt is the next
// scheduled rotation.
type CompleteRotation struct {
	SecretID string `json:"secret_id"`
	Seq      uint64 `json:"seq"`
	NextAt   int64  `json:"next_at"`
	At       int64  `json:"at"`
}

// FailRotation ends a rotation that did not reach promotion: CURRENT is untouched and the
// PENDING version (if any) is discarded (DEPRECATED, key and ciphertext dropped).
type FailRotation struct {
	SecretID string `json:"secret_id"`
	Seq      uint64 `json:"seq"`
	Error    string `json:"error"`
	NextAt   int64  `json:"next_at"`
	At       int64  `json:"at"`
}

func rotationHandlers() map[CommandType]handler {
	return map[CommandType]handler{
		CmdPutRotationPolicy:    decodeInto(applyPutRotationPolicy),
		CmdDeleteRotationPolicy: decodeInto(applyDeleteRotationPolicy),
		CmdRotateNow:            decodeInto(applyRotateNow),
		CmdStartRotation:        decodeInto(applyStartRotation),
		CmdPutPendingVersion:    decodeInto(applyPutPendingVersion),
		CmdRotationStep:         decodeInto(applyRotationStep),
		CmdPromoteRotation:      decodeInto(applyPromoteRotation),
		CmdCompleteRotation:     decodeInto(applyCompleteRotation),
		CmdFailRotation:         decodeInto(applyFailRotation),
	}
}

// RotationPolicy returns the rotation policy of a secret.
func (s *State) RotationPolicy(secretID string) (*RotationPolicy, bool) {
	return getObject[RotationPolicy](s.objects, KindRotationPolicy, secretID)
}

// RotationPolicies visits every rotation policy until fn returns false.
func (s *State) RotationPolicies(fn func(*RotationPolicy) bool) {
	eachObject(s.objects, KindRotationPolicy, func(_ string, p *RotationPolicy) bool { return fn(p) })
}

// Rotation returns rotation seq of a secret.
func (s *State) Rotation(secretID string, seq uint64) (*Rotation, bool) {
	return getObject[Rotation](s.objects, KindRotation, RotationKey(secretID, seq))
}

// Rotations returns the kept rotations of a secret, newest first.
func (s *State) Rotations(secretID string) []*Rotation {
	var out []*Rotation
	prefix := secretID + "/"
	s.objects.AscendGreaterOrEqual(&object{Kind: KindRotation, Key: prefix}, func(o *object) bool {
		r, ok := o.Value.(*Rotation)
		if o.Kind != KindRotation || !ok || r.SecretID != secretID {
			return false
		}
		out = append(out, r)
		return true
	})
	slices.Reverse(out)
	return out
}

// DeletedSecrets visits every soft-deleted secret until fn returns false.
func (s *State) DeletedSecrets(fn func(*Secret) bool) {
	s.byID.Ascend(func(sec *Secret) bool {
		if sec.Deleted() {
			return fn(sec)
		}
		return true
	})
}

func liveSecret(tx *txn, id string) (*Secret, *Result) {
	sec, ok := tx.secretByID(id)
	if !ok {
		return nil, fail(fmt.Errorf("secret %s: %w", id, ErrNotFound))
	}
	if sec.Deleted() {
		return nil, fail(ErrDeleted)
	}
	return sec, nil
}

func applyPutRotationPolicy(tx *txn, c *PutRotationPolicy) *Result {
	p := c.Policy
	if p.ID == "" || p.SecretID == "" || p.Schedule == "" || p.Rotator == "" || p.Grace < 0 {
		return fail(fmt.Errorf("%w: rotation policy needs an id, a secret, a schedule and a rotator", ErrInvalid))
	}
	sec, res := liveSecret(tx, p.SecretID)
	if res != nil {
		return res
	}
	if old, ok := getObject[RotationPolicy](tx.objs(), KindRotationPolicy, p.SecretID); ok {
		// A new definition keeps the bookkeeping (and the policy's identity).
		p.ID, p.CreatedAt, p.CreatedBy = old.ID, old.CreatedAt, old.CreatedBy
		p.ManualAt, p.ManualBy = old.ManualAt, old.ManualBy
		p.LastSeq, p.Active, p.LastEndedAt, p.LastOutcome = old.LastSeq, old.Active, old.LastEndedAt, old.LastOutcome
	} else {
		p.CreatedAt, p.CreatedBy = c.At, c.By
	}
	if p.Grace == 0 {
		p.Grace = DefaultRotationGrace
	}
	p.UpdatedAt = c.At
	tx.putObject(KindRotationPolicy, p.SecretID, &p)
	if sec.RotationPolicyID != p.ID {
		next := *sec
		next.RotationPolicyID = p.ID
		next.UpdatedAt = c.At
		tx.putSecret(&next)
	}
	return &Result{Secret: sec}
}

func applyDeleteRotationPolicy(tx *txn, c *DeleteRotationPolicy) *Result {
	p, ok := getObject[RotationPolicy](tx.objs(), KindRotationPolicy, c.SecretID)
	if !ok {
		return fail(fmt.Errorf("rotation policy: %w", ErrNotFound))
	}
	if p.Active != 0 && !c.Force {
		return fail(ErrRotationBusy)
	}
	tx.deleteObject(KindRotationPolicy, c.SecretID)
	if sec, ok := tx.secretByID(c.SecretID); ok && sec.RotationPolicyID != "" {
		next := *sec
		next.RotationPolicyID = ""
		tx.putSecret(&next)
	}
	for _, r := range (&State{objects: tx.objs()}).Rotations(c.SecretID) {
		tx.deleteObject(KindRotation, RotationKey(r.SecretID, r.Seq))
	}
	return &Result{}
}

func applyRotateNow(tx *txn, c *RotateNow) *Result {
	if _, res := liveSecret(tx, c.SecretID); res != nil {
		return res
	}
	p, ok := getObject[RotationPolicy](tx.objs(), KindRotationPolicy, c.SecretID)
	if !ok {
		return fail(fmt.Errorf("rotation policy: %w", ErrNotFound))
	}
	next := *p
	if next.ManualAt == 0 {
		next.ManualAt, next.ManualBy = c.At, c.By
		tx.putObject(KindRotationPolicy, c.SecretID, &next)
	}
	// The next rotation to start takes the request: the one after a running rotation.
	return &Result{RotationSeq: next.LastSeq + 1}
}

// rotationAt returns the running rotation seq of a secret, or a failed Result when the
// rotation is not running or not at one of the steps in want.
func rotationAt(tx *txn, secretID string, seq uint64, want ...RotationStep) (*RotationPolicy, *Rotation, *Result) {
	p, ok := getObject[RotationPolicy](tx.objs(), KindRotationPolicy, secretID)
	if !ok {
		return nil, nil, fail(fmt.Errorf("rotation policy: %w", ErrNotFound))
	}
	r, ok := getObject[Rotation](tx.objs(), KindRotation, RotationKey(secretID, seq))
	if !ok || p.Active != seq || !slices.Contains(want, r.Step) {
		return nil, nil, fail(ErrRotationStep)
	}
	return p, r, nil
}

func (r *Rotation) advance(step RotationStep, at int64) {
	r.Step, r.UpdatedAt, r.Attempt, r.RetryAt, r.Error = step, at, 0, 0, ""
	r.Events = append(slices.Clip(r.Events), RotationEvent{Step: step, At: at})
}

func putRotation(tx *txn, r *Rotation) {
	tx.putObject(KindRotation, RotationKey(r.SecretID, r.Seq), r)
}

func applyStartRotation(tx *txn, c *StartRotation) *Result {
	sec, res := liveSecret(tx, c.SecretID)
	if res != nil {
		return res
	}
	p, ok := getObject[RotationPolicy](tx.objs(), KindRotationPolicy, c.SecretID)
	if !ok {
		return fail(fmt.Errorf("rotation policy: %w", ErrNotFound))
	}
	if p.Active != 0 || c.Seq != p.LastSeq+1 || c.RotationID == "" {
		return fail(ErrRotationStep)
	}
	r := &Rotation{ID: c.RotationID, SecretID: c.SecretID, Seq: c.Seq, Trigger: c.Trigger, By: c.By,
		OldVersion: sec.CurrentVersion, StartedAt: c.At}
	r.advance(StepStarted, c.At)
	putRotation(tx, r)
	next := *p
	next.LastSeq, next.Active = c.Seq, c.Seq
	if c.Trigger == TriggerManual {
		next.ManualAt, next.ManualBy = 0, ""
	}
	tx.putObject(KindRotationPolicy, c.SecretID, &next)
	if c.Seq > MaxRotationHistory {
		tx.deleteObject(KindRotation, RotationKey(c.SecretID, c.Seq-MaxRotationHistory))
	}
	return &Result{RotationSeq: c.Seq}
}

func applyPutPendingVersion(tx *txn, c *PutPendingVersion) *Result {
	if c.VersionID == "" || len(c.Ciphertext) == 0 || len(c.WrappedKey) == 0 {
		return fail(fmt.Errorf("%w: pending version needs a version id, ciphertext and wrapped key", ErrInvalid))
	}
	sec, res := liveSecret(tx, c.SecretID)
	if res != nil {
		return res
	}
	_, r, res := rotationAt(tx, c.SecretID, c.Seq, StepStarted)
	if res != nil {
		return res
	}
	if c.Expect != sec.LatestVersion {
		return fail(&ConflictError{Current: sec.CurrentVersion, Latest: sec.LatestVersion})
	}
	n := sec.LatestVersion + 1
	v := &SecretVersion{
		ID: c.VersionID, SecretID: sec.ID, Number: n, Ciphertext: c.Ciphertext, WrappedKey: c.WrappedKey,
		KMSKeyID: tx.intern(c.KMSKeyID), KMSProvider: tx.intern(c.KMSProvider),
		State: StatePending, CreatedBy: tx.intern(c.By), CreatedAt: c.At,
	}
	tx.putVersion(v)
	next := *sec
	next.LatestVersion = n
	next.UpdatedAt = c.At
	tx.putSecret(&next)
	nr := *r
	nr.NewVersion = n
	nr.advance(StepPending, c.At)
	putRotation(tx, &nr)
	return &Result{Secret: &next, Version: v, RotationSeq: c.Seq}
}

// stepTransitions are the moves RotationStepCmd may make.
var stepTransitions = map[RotationStep]RotationStep{
	StepPending:  StepApplied,
	StepApplied:  StepTested,
	StepPromoted: StepFinished,
}

func applyRotationStep(tx *txn, c *RotationStepCmd) *Result {
	_, r, res := rotationAt(tx, c.SecretID, c.Seq, c.From)
	if res != nil {
		return res
	}
	nr := *r
	switch {
	case c.To == c.From && !c.From.Ended():
		nr.Attempt++
		nr.RetryAt, nr.Error, nr.UpdatedAt = c.RetryAt, c.Error, c.At
		nr.Events = append(slices.Clip(nr.Events), RotationEvent{Step: c.From, At: c.At, Attempt: nr.Attempt, Error: c.Error})
	case stepTransitions[c.From] == c.To:
		nr.advance(c.To, c.At)
	default:
		return fail(fmt.Errorf("%w: no step from %s to %s", ErrInvalid, c.From, c.To))
	}
	putRotation(tx, &nr)
	return &Result{RotationSeq: c.Seq}
}

func applyPromoteRotation(tx *txn, c *PromoteRotation) *Result {
	sec, res := liveSecret(tx, c.SecretID)
	if res != nil {
		return res
	}
	_, r, res := rotationAt(tx, c.SecretID, c.Seq, StepTested)
	if res != nil {
		return res
	}
	pending, ok := tx.version(sec.ID, r.NewVersion)
	if !ok || pending.State != StatePending || pending.Destroyed {
		return fail(fmt.Errorf("%w: pending version %d is gone", ErrInvalid, r.NewVersion))
	}
	if sec.CurrentVersion != r.OldVersion {
		// The secret was written during the rotation: the new value would silently replace it.
		return fail(&ConflictError{Current: sec.CurrentVersion, Latest: sec.LatestVersion})
	}
	next := *sec
	tx.setVersionState(next.ID, next.PreviousVersion, StateDeprecated)
	if old, ok := tx.version(next.ID, next.CurrentVersion); ok {
		o := *old
		o.State, o.ExpiresAt = StatePrevious, c.GraceUntil
		tx.putVersion(&o)
	}
	tx.setVersionState(next.ID, pending.Number, StateCurrent)
	next.PreviousVersion = next.CurrentVersion
	next.CurrentVersion = pending.Number
	next.UpdatedAt = c.At
	prune(tx, &next)
	tx.putSecret(&next)
	nr := *r
	nr.PromotedAt, nr.GraceUntil = c.At, c.GraceUntil
	nr.advance(StepPromoted, c.At)
	putRotation(tx, &nr)
	v, _ := tx.version(next.ID, pending.Number)
	return &Result{Secret: &next, Version: v, RotationSeq: c.Seq}
}

func endRotation(tx *txn, p *RotationPolicy, r *Rotation, step RotationStep, outcome, errText string, nextAt, at int64) {
	nr := *r
	nr.advance(step, at)
	nr.Outcome, nr.Error, nr.EndedAt = outcome, errText, at
	if errText != "" {
		nr.Events[len(nr.Events)-1].Error = errText
	}
	putRotation(tx, &nr)
	np := *p
	np.Active, np.LastEndedAt, np.LastOutcome, np.NextAt = 0, at, outcome, nextAt
	tx.putObject(KindRotationPolicy, p.SecretID, &np)
}

func applyCompleteRotation(tx *txn, c *CompleteRotation) *Result {
	p, r, res := rotationAt(tx, c.SecretID, c.Seq, StepFinished)
	if res != nil {
		return res
	}
	// A purged or deleted secret still ends its rotation; only live state is changed.
	if sec, ok := tx.secretByID(c.SecretID); ok {
		if old, ok := tx.version(sec.ID, r.OldVersion); ok && old.State == StatePrevious {
			next := *sec
			tx.setVersionState(sec.ID, r.OldVersion, StateDeprecated)
			if next.PreviousVersion == r.OldVersion {
				next.PreviousVersion = 0
			}
			next.UpdatedAt = c.At
			prune(tx, &next)
			tx.putSecret(&next)
		}
	}
	endRotation(tx, p, r, StepCompleted, OutcomeSucceeded, "", c.NextAt, c.At)
	return &Result{RotationSeq: c.Seq}
}

func applyFailRotation(tx *txn, c *FailRotation) *Result {
	p, r, res := rotationAt(tx, c.SecretID, c.Seq, StepStarted, StepPending, StepApplied, StepTested)
	if res != nil {
		return res
	}
	if sec, ok := tx.secretByID(c.SecretID); ok && r.NewVersion != 0 {
		if v, ok := tx.version(sec.ID, r.NewVersion); ok && v.State == StatePending {
			tx.setVersionState(sec.ID, r.NewVersion, StateDeprecated)
			tx.shred(sec.ID, r.NewVersion)
		}
	}
	endRotation(tx, p, r, StepFailed, OutcomeFailed, c.Error, c.NextAt, c.At)
	return &Result{RotationSeq: c.Seq}
}
