package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/keyward/keyward/fsm"
)

// Snapshot file format: a magic line, the FSM snapshot stream (ciphertext and wrapped keys
// only, see fsm/snapshot.go), and a trailer line holding the SHA-256 of everything before it.
//
//	keyward-snapshot v1\n
//	<fsm stream>
//	sha256 <64 hex digits>\n
const (
	snapshotMagic   = "keyward-snapshot v1\n"
	snapshotTrailer = "sha256 "
	// MaxSnapshotBytes caps a snapshot accepted for restore.
	MaxSnapshotBytes = 4 << 30
)

// ErrBadSnapshot: a snapshot file is not in the format, truncated, or fails its checksum.
var ErrBadSnapshot = errors.New("invalid snapshot")

// Restorer replaces the replicated state with an FSM snapshot stream. cluster.Node
// implements it.
type Restorer interface {
	Restore(ctx context.Context, snapshot []byte) error
}

// Snapshot writes a consistent snapshot: the state as of a linearizable read.
func (s *Service) Snapshot(ctx context.Context, w io.Writer) error {
	if _, err := s.requireAdmin(ctx); err != nil {
		return s.audited(ctx, record{action: "SNAPSHOT"}, err)
	}
	if err := s.audited(ctx, record{action: "SNAPSHOT"}, nil); err != nil {
		return err
	}
	st, _, err := s.readState(ctx, ReadOptions{})
	if err != nil {
		return err
	}
	h := sha256.New()
	mw := io.MultiWriter(w, h)
	if _, err := io.WriteString(mw, snapshotMagic); err != nil {
		return err
	}
	if err := fsm.WriteSnapshot(mw, st); err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s%s\n", snapshotTrailer, hex.EncodeToString(h.Sum(nil)))
	return err
}

// Restore checks a snapshot file (format, checksum, and that the state decodes) and restores
// it into the cluster. Every node ends with the snapshot's secrets; the KEK must be the one
// the source cluster used, or the values cannot be opened.
func (s *Service) Restore(ctx context.Context, r io.Reader) error {
	if _, err := s.requireAdmin(ctx); err != nil {
		return s.audited(ctx, record{action: "RESTORE_SNAPSHOT"}, err)
	}
	if err := s.audited(ctx, record{action: "RESTORE_SNAPSHOT"}, nil); err != nil {
		return err
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("%w: reading: %w", ErrBadSnapshot, err)
	}
	body, err := verifySnapshot(data)
	if err != nil {
		return err
	}
	if _, err := fsm.ReadSnapshot(bytes.NewReader(body)); err != nil {
		return fmt.Errorf("%w: %w", ErrBadSnapshot, err)
	}
	if err := s.d.Restorer.Restore(ctx, body); err != nil {
		return clusterError(err)
	}
	return nil
}

// verifySnapshot checks the magic line and checksum trailer and returns the FSM stream.
func verifySnapshot(data []byte) ([]byte, error) {
	if !bytes.HasPrefix(data, []byte(snapshotMagic)) {
		return nil, fmt.Errorf("%w: not a keyward snapshot", ErrBadSnapshot)
	}
	trimmed := bytes.TrimSuffix(data, []byte("\n"))
	i := bytes.LastIndexByte(trimmed, '\n')
	if i < 0 || !bytes.HasPrefix(trimmed[i+1:], []byte(snapshotTrailer)) {
		return nil, fmt.Errorf("%w: checksum trailer missing (truncated file?)", ErrBadSnapshot)
	}
	want, err := hex.DecodeString(string(trimmed[i+1+len(snapshotTrailer):]))
	if err != nil || len(want) != sha256.Size {
		return nil, fmt.Errorf("%w: malformed checksum", ErrBadSnapshot)
	}
	covered := data[:i+1]
	got := sha256.Sum256(covered)
	if !bytes.Equal(got[:], want) {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrBadSnapshot)
	}
	return covered[len(snapshotMagic):], nil
}
