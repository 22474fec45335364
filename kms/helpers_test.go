package kms_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"path/filepath"
	"testing"

	"github.com/keyward/keyward/kms"
)

// newTestLocal returns a Local provider with a fresh key file in a temporary
// directory.
func newTestLocal(tb testing.TB) *kms.Local {
	tb.Helper()
	p, err := kms.NewLocal(filepath.Join(tb.TempDir(), "kek"))
	if err != nil {
		tb.Fatalf("NewLocal: %v", err)
	}
	return p
}

// mustSeal seals plaintext or fails the test.
func mustSeal(tb testing.TB, e *kms.Envelope, secretID string, version uint64, plaintext []byte) kms.Sealed {
	tb.Helper()
	s, err := e.Seal(context.Background(), secretID, version, plaintext)
	if err != nil {
		tb.Fatalf("Seal(%q, %d): %v", secretID, version, err)
	}
	return s
}

// mustOpen opens s and checks it yields want, or fails the test.
func mustOpen(tb testing.TB, e *kms.Envelope, secretID string, version uint64, s kms.Sealed, want []byte) {
	tb.Helper()
	got, err := e.Open(context.Background(), secretID, version, s)
	if err != nil {
		tb.Fatalf("Open(%q, %d): %v", secretID, version, err)
	}
	if !bytes.Equal(got, want) {
		tb.Fatalf("Open(%q, %d) = %q, want %q", secretID, version, got, want)
	}
}

// wantErr fails the test unless err wraps target. It also checks that the
// error text contains secret neither raw nor hex-encoded, when given.
func wantErr(tb testing.TB, err, target error, secret []byte) {
	tb.Helper()
	if !errors.Is(err, target) {
		tb.Fatalf("error = %v, want %v", err, target)
	}
	if len(secret) == 0 {
		return
	}
	msg := []byte(err.Error())
	if bytes.Contains(msg, secret) || bytes.Contains(bytes.ToLower(msg), []byte(hex.EncodeToString(secret))) {
		tb.Fatalf("error %q leaks secret material", err)
	}
}

// clone returns a deep copy of s, so tests can tamper with it.
func clone(s kms.Sealed) kms.Sealed {
	s.Ciphertext = bytes.Clone(s.Ciphertext)
	s.WrappedKey = bytes.Clone(s.WrappedKey)
	return s
}
