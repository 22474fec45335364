package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/keyward/keyward/fsm"
)

// Rotation: the API half (set, show, now, delete: authorized with ROTATE and audited) and the
// half the leader's runner (package rotation) uses as the system principal RotationCaller:
// reading values, sealing and proposing the protocol's steps, purging expired secrets.

// ErrRotationBusy: the secret has a running rotation; its policy can be deleted once it ends.
var ErrRotationBusy = errors.New("a rotation is running")

// RotationCaller is the principal the rotation runner acts as. It appears in audit records
// and as the author of rotated versions; it is not an account anyone can log in as.
var RotationCaller = Caller{Type: fsm.PrincipalService, ID: "system:rotation", Method: "system"}

// RotationPolicyInput defines a secret's rotation. The rotation package checks the schedule
// and the rotator settings and computes NextAt before calling SetRotationPolicy.
type RotationPolicyInput struct {
	Path     string
	Schedule string
	Grace    time.Duration // 0: fsm.DefaultRotationGrace
	Rotator  string
	Settings json.RawMessage
	// Refs are the paths of the secrets the settings reference (target credentials, HMAC
	// keys); the caller must be allowed to READ each of them.
	Refs   []string
	NextAt time.Time
}

// RotationStatus is a secret's rotation policy and its kept rotations, newest first.
type RotationStatus struct {
	Secret    *fsm.Secret
	Policy    *fsm.RotationPolicy
	Rotations []*fsm.Rotation
	Read      ReadInfo
}

// MaxRotationSettingsBytes bounds a policy's rotator settings.
const MaxRotationSettingsBytes = 16 << 10

// SetRotationPolicy creates or replaces the rotation policy of a live secret.
func (s *Service) SetRotationPolicy(ctx context.Context, in RotationPolicyInput) (*fsm.RotationPolicy, error) {
	if err := ValidatePath(in.Path); err != nil {
		return nil, err
	}
	if len(in.Settings) > MaxRotationSettingsBytes {
		return nil, fmt.Errorf("%w: rotator settings are over %d bytes", ErrInvalidArgument, MaxRotationSettingsBytes)
	}
	if in.Grace < 0 {
		return nil, fmt.Errorf("%w: grace must not be negative", ErrInvalidArgument)
	}
	for _, ref := range in.Refs {
		if err := ValidatePath(ref); err != nil {
			return nil, fmt.Errorf("referenced secret: %w", err)
		}
	}
	st, _, err := s.readState(ctx, ReadOptions{})
	if err != nil {
		return nil, err
	}
	sec, rec := lookup(st, "ROTATION_SET", in.Path)
	c, err := s.authorize(ctx, st, fsm.ActionRotate, in.Path, sec)
	for _, ref := range in.Refs {
		if err != nil {
			break
		}
		refSec, _ := st.SecretByPath(ref)
		_, err = s.authorize(ctx, st, fsm.ActionRead, ref, refSec)
	}
	if err != nil {
		return nil, s.audited(ctx, rec, err)
	}
	p, err := s.setRotationPolicy(ctx, in, sec, c)
	if err := s.audited(ctx, rec, err); err != nil {
		return nil, err
	}
	return p, nil
}

func (s *Service) setRotationPolicy(ctx context.Context, in RotationPolicyInput, sec *fsm.Secret, c Caller) (*fsm.RotationPolicy, error) {
	if err := requireLive(sec, in.Path); err != nil {
		return nil, err
	}
	var next int64
	if !in.NextAt.IsZero() {
		next = in.NextAt.UnixNano()
	}
	res, err := s.propose(ctx, fsm.MustEncode(fsm.CmdPutRotationPolicy, fsm.PutRotationPolicy{
		Policy: fsm.RotationPolicy{ID: s.d.NewID(), SecretID: sec.ID, Schedule: in.Schedule, Grace: int64(in.Grace),
			Rotator: in.Rotator, Settings: in.Settings, NextAt: next},
		By: string(c.Type) + "/" + c.ID, At: s.d.Now().UnixNano(),
	}))
	if err != nil {
		return nil, err
	}
	if res.Err != nil {
		return nil, fsmError(res.Err, nil)
	}
	if err := s.waitApplied(ctx, res.Index); err != nil {
		return nil, err
	}
	p, ok := s.d.State.State().RotationPolicy(sec.ID)
	if !ok {
		return nil, fmt.Errorf("rotation policy of %q: %w", in.Path, ErrNotFound)
	}
	return p, nil
}

// DeleteRotationPolicy stops rotating a secret. It fails with ErrRotationBusy while a
// rotation runs.
func (s *Service) DeleteRotationPolicy(ctx context.Context, path string) error {
	if err := ValidatePath(path); err != nil {
		return err
	}
	st, _, err := s.readState(ctx, ReadOptions{})
	if err != nil {
		return err
	}
	sec, rec := lookup(st, "ROTATION_DELETE", path)
	if _, err := s.authorize(ctx, st, fsm.ActionRotate, path, sec); err != nil {
		return s.audited(ctx, rec, err)
	}
	return s.audited(ctx, rec, s.proposeRotationCmd(ctx, sec, path, func(id string) []byte {
		return fsm.MustEncode(fsm.CmdDeleteRotationPolicy, fsm.DeleteRotationPolicy{SecretID: id})
	}))
}

func (s *Service) proposeRotationCmd(ctx context.Context, sec *fsm.Secret, path string, cmd func(secretID string) []byte) error {
	if sec == nil {
		return fmt.Errorf("secret %q: %w", path, ErrNotFound)
	}
	res, err := s.propose(ctx, cmd(sec.ID))
	if err != nil {
		return err
	}
	return rotationError(res.Err)
}

// rotationError maps the FSM's rotation failures to the service's.
func rotationError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fsm.ErrRotationBusy):
		return fmt.Errorf("%w: %w", ErrRotationBusy, err)
	}
	return fsmError(err, nil)
}

// RotationStatus returns a secret's rotation policy and history. It needs ROTATE.
func (s *Service) RotationStatus(ctx context.Context, path string, ro ReadOptions) (*RotationStatus, error) {
	if err := ValidatePath(path); err != nil {
		return nil, err
	}
	st, info, err := s.readState(ctx, ro)
	if err != nil {
		return nil, err
	}
	sec, rec := lookup(st, "ROTATION_SHOW", path)
	if _, err := s.authorize(ctx, st, fsm.ActionRotate, path, sec); err != nil {
		return nil, s.audited(ctx, rec, err)
	}
	out, err := rotationStatus(st, sec, path)
	if err := s.audited(ctx, rec, err); err != nil {
		return nil, err
	}
	out.Read = info
	return out, nil
}

func rotationStatus(st *fsm.State, sec *fsm.Secret, path string) (*RotationStatus, error) {
	if err := requireLive(sec, path); err != nil {
		return nil, err
	}
	p, ok := st.RotationPolicy(sec.ID)
	if !ok {
		return nil, fmt.Errorf("secret %q has no rotation policy: %w", path, ErrNotFound)
	}
	return &RotationStatus{Secret: sec, Policy: p, Rotations: st.Rotations(sec.ID)}, nil
}

// RotateNow asks the leader's runner to rotate a secret now (action ROTATE). It returns the
// sequence number the rotation will have; the request is forwarded to the leader like any
// write.
func (s *Service) RotateNow(ctx context.Context, path string) (uint64, error) {
	if err := ValidatePath(path); err != nil {
		return 0, err
	}
	st, _, err := s.readState(ctx, ReadOptions{})
	if err != nil {
		return 0, err
	}
	sec, rec := lookup(st, string(fsm.ActionRotate), path)
	c, err := s.authorize(ctx, st, fsm.ActionRotate, path, sec)
	if err != nil {
		return 0, s.audited(ctx, rec, err)
	}
	var seq uint64
	err = requireLive(sec, path)
	if err == nil {
		if _, ok := st.RotationPolicy(sec.ID); !ok {
			err = fmt.Errorf("secret %q has no rotation policy: %w", path, ErrNotFound)
		}
	}
	if err == nil {
		var res *fsm.Result
		res, err = s.propose(ctx, fsm.MustEncode(fsm.CmdRotateNow, fsm.RotateNow{
			SecretID: sec.ID, By: string(c.Type) + "/" + c.ID, At: s.d.Now().UnixNano()}))
		if err == nil {
			err = rotationError(res.Err)
			seq = res.RotationSeq
		}
	}
	if err := s.audited(ctx, rec, err); err != nil {
		return 0, err
	}
	return seq, nil
}

// WaitRotation waits until rotation seq of the secret at path has ended or ctx ends, and
// returns the rotation as this node last saw it (nil if it has not started). The caller was
// authorized by RotateNow.
func (s *Service) WaitRotation(ctx context.Context, path string, seq uint64) (*fsm.Rotation, error) {
	for {
		ch := s.d.State.Applied()
		st := s.d.State.State()
		sec, ok := st.SecretByPath(path)
		if !ok {
			return nil, fmt.Errorf("secret %q: %w", path, ErrNotFound)
		}
		r, ok := st.Rotation(sec.ID, seq)
		if ok && r.Step.Ended() {
			return r, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			if ok {
				return r, nil
			}
			return nil, nil
		}
	}
}

// ---- The runner's side. Every call runs as RotationCaller (see SystemContext). ----

// SystemContext returns ctx acting as the rotation principal.
func SystemContext(ctx context.Context) context.Context { return WithCaller(ctx, RotationCaller) }

// SystemState is the local replicated state (on the leader: everything committed so far that
// this node applied).
func (s *Service) SystemState() *fsm.State { return s.d.State.State() }

// AuditRotation records one rotation step (action names ROTATE_*), failed when stepErr is
// not nil. It returns an error only when the record could not be made durable.
func (s *Service) AuditRotation(ctx context.Context, action string, sec *fsm.Secret, versionID string, stepErr error) error {
	rec := record{action: action, versionID: versionID}
	if sec != nil {
		rec.path, rec.secretID = sec.Path, sec.ID
	}
	err := s.audited(SystemContext(ctx), rec, stepErr)
	if errors.Is(err, ErrAuditUnavailable) {
		return err
	}
	return nil
}

// SystemReadCurrent decrypts the CURRENT value of the live secret at path for the runner
// (references such as target credentials), audited as a READ by the rotation principal.
func (s *Service) SystemReadCurrent(ctx context.Context, path string) ([]byte, error) {
	ctx = SystemContext(ctx)
	st := s.d.State.State()
	sec, rec := lookup(st, string(fsm.ActionRead), path)
	v, err := s.get(ctx, st, ReadInfo{}, path, sec, Selector{})
	if v != nil {
		rec.versionID = v.VersionID
	}
	if err := s.audited(ctx, rec, err); err != nil {
		if v != nil {
			clear(v.Plaintext)
		}
		return nil, err
	}
	return v.Plaintext, nil
}

// SystemReadVersion decrypts version n of a secret for the runner, audited as a READ.
func (s *Service) SystemReadVersion(ctx context.Context, secretID string, n uint64) ([]byte, error) {
	ctx = SystemContext(ctx)
	st := s.d.State.State()
	sec, ok := st.SecretByID(secretID)
	if !ok {
		return nil, fmt.Errorf("secret %s: %w", secretID, ErrNotFound)
	}
	v, err := s.get(ctx, st, ReadInfo{}, sec.Path, sec, Selector{Version: n})
	rec := record{action: string(fsm.ActionRead), path: sec.Path, secretID: sec.ID}
	if v != nil {
		rec.versionID = v.VersionID
	}
	if err := s.audited(ctx, rec, err); err != nil {
		if v != nil {
			clear(v.Plaintext)
		}
		return nil, err
	}
	return v.Plaintext, nil
}

// ProposePending seals value on this node for the secret's next version number and proposes
// it as rotation seq's PENDING version, re-sealing if a write took the number first.
func (s *Service) ProposePending(ctx context.Context, secretID string, seq uint64, value []byte) (*fsm.Result, error) {
	if err := validateValue(value); err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		sec, ok := s.d.State.State().SecretByID(secretID)
		if !ok {
			return nil, fmt.Errorf("secret %s: %w", secretID, ErrNotFound)
		}
		mu := s.pathLock(sec.Path)
		mu.Lock()
		sealed, err := s.d.Sealer.Seal(ctx, secretID, sec.LatestVersion+1, value)
		if err != nil {
			mu.Unlock()
			return nil, kmsError(err)
		}
		res, err := s.propose(ctx, fsm.MustEncode(fsm.CmdPutPendingVersion, &fsm.PutPendingVersion{
			SecretID: secretID, Seq: seq, Expect: sec.LatestVersion, VersionID: s.d.NewID(),
			Ciphertext: sealed.Ciphertext, WrappedKey: sealed.WrappedKey, KMSKeyID: sealed.KeyID,
			KMSProvider: sealed.Provider, By: string(RotationCaller.Type) + "/" + RotationCaller.ID,
			At: s.d.Now().UnixNano(),
		}))
		mu.Unlock()
		if err != nil {
			return nil, err
		}
		var ce *fsm.ConflictError
		if errors.As(res.Err, &ce) && attempt < maxWriteAttempts {
			if err := s.waitApplied(ctx, res.Index); err != nil {
				return nil, err
			}
			continue
		}
		return res, nil
	}
}

// ProposeRotation proposes one rotation command and returns the FSM's result (business
// failures in Result.Err).
func (s *Service) ProposeRotation(ctx context.Context, t fsm.CommandType, payload any) (*fsm.Result, error) {
	b, err := fsm.Encode(t, payload)
	if err != nil {
		return nil, err
	}
	return s.propose(ctx, b)
}

// PurgeDeleted removes a soft-deleted secret whose recovery window ended, audited as PURGE by
// the rotation principal.
func (s *Service) PurgeDeleted(ctx context.Context, sec *fsm.Secret) error {
	rec := record{action: "PURGE", path: sec.Path, secretID: sec.ID}
	err := s.proposeRotationCmd(ctx, sec, sec.Path, func(id string) []byte {
		return fsm.MustEncode(fsm.CmdPurgeSecret, fsm.PurgeSecret{SecretID: id})
	})
	return s.audited(SystemContext(ctx), rec, err)
}
