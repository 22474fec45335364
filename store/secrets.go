package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keyward/keyward/fsm"
	"github.com/keyward/keyward/kms"
)

// PutInput is a write of a new version.
type PutInput struct {
	Path        string
	Value       []byte
	CAS         *uint64 // expected CURRENT version; 0 = must not exist
	Description *string
	By          string
}

// WriteResult describes the version a write created.
type WriteResult struct {
	Path      string
	SecretID  string
	Version   uint64
	VersionID string
	State     fsm.VersionState
	CreatedAt time.Time
	Index     uint64
}

// Put encrypts the value on this node for the next version number and proposes it. If another
// write took that number first, it re-seals for the new number and tries again, unless the
// caller asked for check-and-set.
func (s *Service) Put(ctx context.Context, in PutInput) (*WriteResult, error) {
	if err := ValidatePath(in.Path); err != nil {
		return nil, err
	}
	st := s.d.State.State()
	sec, rec := lookup(st, string(fsm.ActionWrite), in.Path)
	c, err := s.authorize(ctx, st, fsm.ActionWrite, in.Path, sec)
	if err != nil {
		return nil, s.audited(ctx, rec, err)
	}
	if in.By == "" {
		in.By = string(c.Type) + "/" + c.ID
	}
	res, err := s.put(ctx, in, rec)
	if err == nil && s.d.Audit != nil {
		return res, nil // the write's own Raft entry committed its audit record
	}
	if res != nil {
		rec.secretID, rec.versionID = res.SecretID, res.VersionID
	}
	if err := s.audited(ctx, rec, err); err != nil {
		return nil, err
	}
	return res, nil
}

// put proposes the write; with auditing on, its command carries rec's audit record, which
// Apply commits with the version if the write succeeds.
func (s *Service) put(ctx context.Context, in PutInput, rec record) (*WriteResult, error) {
	if err := validateValue(in.Value); err != nil {
		return nil, err
	}
	if in.Description != nil && len(*in.Description) > MaxDescBytes {
		return nil, fmt.Errorf("%w: description is over %d bytes", ErrInvalidArgument, MaxDescBytes)
	}
	mu := s.pathLock(in.Path)
	mu.Lock()
	defer mu.Unlock()
	for attempt := 1; ; attempt++ {
		st := s.d.State.State()
		secretID, expect := s.d.NewID(), uint64(0)
		if sec, ok := st.SecretByPath(in.Path); ok {
			// A soft-deleted secret is refused by the FSM, which has the final word: this
			// node's state may lag right after an election.
			secretID, expect = sec.ID, sec.LatestVersion
		}
		sealed, err := s.d.Sealer.Seal(ctx, secretID, expect+1, in.Value)
		if err != nil {
			return nil, kmsError(err)
		}
		pv := fsm.PutVersion{
			SecretID: secretID, Path: in.Path, Expect: expect, CAS: in.CAS,
			VersionID: s.d.NewID(), Ciphertext: sealed.Ciphertext, WrappedKey: sealed.WrappedKey,
			KMSKeyID: sealed.KeyID, KMSProvider: sealed.Provider,
			Description: in.Description, By: in.By, At: s.d.Now().UnixNano(),
		}
		if s.d.Audit != nil {
			rec.secretID, rec.versionID = pv.SecretID, pv.VersionID
			a := s.auditRecord(ctx, rec, nil)
			pv.Audit = &a
		}
		cmd := fsm.MustEncode(fsm.CmdPutVersion, pv)
		res, err := s.propose(ctx, cmd)
		if err != nil {
			return nil, err
		}
		var ce *fsm.ConflictError
		if errors.As(res.Err, &ce) && !ce.UserCAS {
			if attempt == maxWriteAttempts {
				return nil, ErrBusy
			}
			// Another write won the version number: catch up and re-seal.
			if err := s.waitApplied(ctx, res.Index); err != nil {
				return nil, err
			}
			continue
		}
		if res.Err != nil {
			return nil, fsmError(res.Err, in.CAS)
		}
		return &WriteResult{
			Path: in.Path, SecretID: res.Secret.ID, Version: res.Version.Number,
			VersionID: res.Version.ID, State: res.Version.State,
			CreatedAt: time.Unix(0, res.Version.CreatedAt).UTC(), Index: res.Index,
		}, nil
	}
}

// Selector picks a version: by number, by state, or (zero value) the CURRENT one.
type Selector struct {
	Version uint64
	State   fsm.VersionState
}

// Value is a decrypted version.
type Value struct {
	Path      string
	SecretID  string
	Version   uint64
	VersionID string
	State     fsm.VersionState
	CreatedAt time.Time
	Plaintext []byte
	Read      ReadInfo
}

// Get reads and decrypts one version from the local state.
func (s *Service) Get(ctx context.Context, path string, sel Selector, ro ReadOptions) (*Value, error) {
	if sel.Version != 0 && sel.State != fsm.StateUnknown {
		return nil, fmt.Errorf("%w: choose a version or a state, not both", ErrInvalidArgument)
	}
	if err := ValidatePath(path); err != nil {
		return nil, err
	}
	st, info, err := s.readState(ctx, ro)
	if err != nil {
		return nil, err
	}
	sec, rec := lookup(st, string(fsm.ActionRead), path)
	if _, err := s.authorize(ctx, st, fsm.ActionRead, path, sec); err != nil {
		return nil, s.audited(ctx, rec, err)
	}
	v, err := s.get(ctx, st, info, path, sec, sel)
	if v != nil {
		rec.versionID = v.VersionID
	}
	if err := s.audited(ctx, rec, err); err != nil {
		if v != nil {
			clear(v.Plaintext)
		}
		return nil, err
	}
	return v, nil
}

func (s *Service) get(ctx context.Context, st *fsm.State, info ReadInfo, path string, sec *fsm.Secret, sel Selector) (*Value, error) {
	if err := requireLive(sec, path); err != nil {
		return nil, err
	}
	var v *fsm.SecretVersion
	var ok bool
	switch {
	case sel.Version != 0:
		v, ok = st.Version(sec.ID, sel.Version)
	case sel.State == fsm.StateUnknown || sel.State == fsm.StateCurrent:
		v, ok = st.Version(sec.ID, sec.CurrentVersion)
	case sel.State == fsm.StatePrevious:
		v, ok = st.Version(sec.ID, sec.PreviousVersion)
	default:
		v, ok = st.NewestInState(sec.ID, sel.State)
	}
	if !ok {
		return nil, fmt.Errorf("%w: secret %q has no such version", ErrNotFound, path)
	}
	if v.Destroyed {
		return nil, fmt.Errorf("%w: version %d of %q", ErrDestroyed, v.Number, path)
	}
	plain, err := s.d.Sealer.Open(ctx, sec.ID, v.Number, kms.Sealed{
		Ciphertext: v.Ciphertext, WrappedKey: v.WrappedKey, KeyID: v.KMSKeyID, Provider: v.KMSProvider,
	})
	if err != nil {
		return nil, fmt.Errorf("open version %d of %q: %w", v.Number, path, kmsError(err))
	}
	return &Value{
		Path: sec.Path, SecretID: sec.ID, Version: v.Number, VersionID: v.ID, State: v.State,
		CreatedAt: time.Unix(0, v.CreatedAt).UTC(), Plaintext: plain, Read: info,
	}, nil
}

// Metadata is a secret and its versions (newest first), without values.
type Metadata struct {
	Secret   *fsm.Secret
	Versions []*fsm.SecretVersion
	Read     ReadInfo
}

// Versions returns the metadata of every version of a live secret.
func (s *Service) Versions(ctx context.Context, path string, ro ReadOptions) (*Metadata, error) {
	if err := ValidatePath(path); err != nil {
		return nil, err
	}
	st, info, err := s.readState(ctx, ro)
	if err != nil {
		return nil, err
	}
	sec, rec := lookup(st, "VERSIONS", path)
	if _, err := s.authorize(ctx, st, fsm.ActionRead, path, sec); err != nil {
		return nil, s.audited(ctx, rec, err)
	}
	if err := s.audited(ctx, rec, requireLive(sec, path)); err != nil {
		return nil, err
	}
	return &Metadata{Secret: sec, Versions: st.Versions(sec.ID), Read: info}, nil
}

// ListResult is one page of a listing.
type ListResult struct {
	Secrets []*fsm.Secret
	Next    string // pass as after for the next page; empty on the last page
	Read    ReadInfo
}

// List returns live secrets whose path starts with prefix, after the path `after`.
func (s *Service) List(ctx context.Context, prefix, after string, limit int, ro ReadOptions) (*ListResult, error) {
	if limit <= 0 || limit > MaxListLimit {
		return nil, fmt.Errorf("%w: limit must be 1..%d", ErrInvalidArgument, MaxListLimit)
	}
	if len(prefix) > MaxPathBytes || len(after) > MaxPathBytes {
		return nil, fmt.Errorf("%w: prefix and after are at most %d bytes", ErrInvalidArgument, MaxPathBytes)
	}
	st, info, err := s.readState(ctx, ro)
	if err != nil {
		return nil, err
	}
	c, ok := CallerFrom(ctx)
	if !ok || !st.Initialized() {
		err := ErrUnauthenticated
		if ok {
			err = ErrNotInitialized
		}
		return nil, s.audited(ctx, record{action: "LIST", path: prefix}, err)
	}
	// Only what the caller may read is listed; a page is filled from further matches.
	now := s.d.Now().UnixNano()
	out := &ListResult{Read: info}
	cursor := after
	for len(out.Secrets) < limit {
		secs, more := st.List(prefix, cursor, limit)
		for _, sec := range secs {
			cursor = sec.Path
			if !s.canRead(st, c, sec, now) {
				continue
			}
			if len(out.Secrets) == limit {
				out.Next = out.Secrets[len(out.Secrets)-1].Path
				more = false
				break
			}
			out.Secrets = append(out.Secrets, sec)
		}
		if !more {
			break
		}
		if len(out.Secrets) == limit {
			out.Next = out.Secrets[len(out.Secrets)-1].Path
		}
	}
	if err := s.audited(ctx, record{action: "LIST", path: prefix}, nil); err != nil {
		return nil, err
	}
	return out, nil
}

// Destroy drops the key and ciphertext of the given versions (crypto-shredding).
func (s *Service) Destroy(ctx context.Context, path string, versions []uint64) ([]uint64, error) {
	if len(versions) == 0 || len(versions) > 1000 {
		return nil, fmt.Errorf("%w: give 1 to 1000 version numbers", ErrInvalidArgument)
	}
	for _, n := range versions {
		if n == 0 {
			return nil, fmt.Errorf("%w: version numbers start at 1", ErrInvalidArgument)
		}
	}
	st, _, err := s.readState(ctx, ReadOptions{})
	if err != nil {
		return nil, err
	}
	if err := ValidatePath(path); err != nil {
		return nil, err
	}
	sec, rec := lookup(st, "DESTROY", path)
	if _, err := s.authorize(ctx, st, fsm.ActionDelete, path, sec); err != nil {
		return nil, s.audited(ctx, rec, err)
	}
	out, err := s.destroy(ctx, path, sec, versions)
	if err := s.audited(ctx, rec, err); err != nil {
		return nil, err
	}
	return out, nil
}

func (s *Service) destroy(ctx context.Context, path string, sec *fsm.Secret, versions []uint64) ([]uint64, error) {
	if sec == nil {
		return nil, fmt.Errorf("secret %q: %w", path, ErrNotFound)
	}
	if sec.Deleted() {
		return nil, ErrDeleted
	}
	res, err := s.propose(ctx, fsm.MustEncode(fsm.CmdDestroyVersions, fsm.DestroyVersions{
		SecretID: sec.ID, Versions: versions, At: s.d.Now().UnixNano(),
	}))
	if err != nil {
		return nil, err
	}
	if res.Err != nil {
		return nil, fsmError(res.Err, nil)
	}
	return res.Destroyed, nil
}

// Delete soft-deletes a live secret, or with purge removes it (live or soft-deleted) for good.
func (s *Service) Delete(ctx context.Context, path string, purge bool) error {
	if err := ValidatePath(path); err != nil {
		return err
	}
	st, _, err := s.readState(ctx, ReadOptions{})
	if err != nil {
		return err
	}
	action := "DELETE"
	if purge {
		action = "PURGE"
	}
	sec, rec := lookup(st, action, path)
	if _, err := s.authorize(ctx, st, fsm.ActionDelete, path, sec); err != nil {
		return s.audited(ctx, rec, err)
	}
	return s.audited(ctx, rec, s.deleteSecret(ctx, path, sec, purge))
}

func (s *Service) deleteSecret(ctx context.Context, path string, sec *fsm.Secret, purge bool) error {
	if sec == nil || (!purge && sec.Deleted()) {
		return fmt.Errorf("secret %q: %w", path, ErrNotFound)
	}
	var cmd []byte
	if purge {
		cmd = fsm.MustEncode(fsm.CmdPurgeSecret, fsm.PurgeSecret{SecretID: sec.ID})
	} else {
		cmd = fsm.MustEncode(fsm.CmdDeleteSecret, fsm.DeleteSecret{SecretID: sec.ID, At: s.d.Now().UnixNano()})
	}
	res, err := s.propose(ctx, cmd)
	if err != nil {
		return err
	}
	if res.Err != nil {
		return fsmError(res.Err, nil)
	}
	return nil
}

// Undelete restores a soft-deleted secret.
func (s *Service) Undelete(ctx context.Context, path string) error {
	if err := ValidatePath(path); err != nil {
		return err
	}
	st, _, err := s.readState(ctx, ReadOptions{})
	if err != nil {
		return err
	}
	sec, rec := lookup(st, "RESTORE", path)
	if _, err := s.authorize(ctx, st, fsm.ActionDelete, path, sec); err != nil {
		return s.audited(ctx, rec, err)
	}
	return s.audited(ctx, rec, s.undelete(ctx, path, sec))
}

func (s *Service) undelete(ctx context.Context, path string, sec *fsm.Secret) error {
	if sec == nil {
		return fmt.Errorf("secret %q: %w", path, ErrNotFound)
	}
	res, err := s.propose(ctx, fsm.MustEncode(fsm.CmdRestoreSecret, fsm.RestoreSecret{SecretID: sec.ID, At: s.d.Now().UnixNano()}))
	if err != nil {
		return err
	}
	if res.Err != nil {
		return fsmError(res.Err, nil)
	}
	return nil
}
