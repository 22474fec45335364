package kms

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
)

const (
	// localName is the Name of the Local provider.
	localName = "local"
	// localFormatV1 is the first byte of a key wrapped by Local.
	localFormatV1 byte = 0x01
	// localNonceSize is the GCM nonce size used by Local.
	localNonceSize = 12
	// localWrappedSize is the exact size of a wrapped key: format byte,
	// nonce, encrypted data key and GCM tag.
	localWrappedSize = 1 + localNonceSize + dataKeySize + 16
	// localADLabel starts the additional data of a wrapped key.
	localADLabel = "keyward/local-wrap/v1"
)

// Local is a Provider holding a 256-bit KEK read from a key file. It wraps
// data keys with AES-256-GCM under the KEK. It is safe for concurrent use.
type Local struct {
	aead  cipher.AEAD
	keyID string
}

var _ Provider = (*Local)(nil)

// NewLocal returns a Local provider using the KEK in the key file at path.
//
// If the file does not exist it is created, atomically and without ever
// overwriting an existing file, holding 32 random bytes hex-encoded with a
// trailing newline, mode 0600, in parent directories created with mode 0700.
// An existing file is refused (ErrKeyFile) if it does not hold exactly 32
// hex-encoded bytes or if group or other have any access to it.
func NewLocal(path string) (*Local, error) {
	if path == "" {
		return nil, errors.New("kms: empty key file path")
	}
	kek, err := loadOrCreateKeyFile(path)
	if err != nil {
		return nil, err
	}
	defer clear(kek)
	return newLocal(kek)
}

// newLocal returns a Local provider using kek, which the caller may clear.
func newLocal(kek []byte) (*Local, error) {
	aead, err := newGCM(kek)
	if err != nil {
		return nil, fmt.Errorf("kms: local key: %w", err)
	}
	sum := sha256.Sum256(kek)
	return &Local{aead: aead, keyID: "local:" + hex.EncodeToString(sum[:8])}, nil
}

// Name returns "local".
func (l *Local) Name() string { return localName }

// KeyID returns "local:" followed by the first 16 hex characters of the
// SHA-256 of the KEK.
func (l *Local) KeyID() string { return l.keyID }

// GenerateDataKey returns a fresh random 256-bit data key and its form
// wrapped under the KEK, bound to encCtx.
func (l *Local) GenerateDataKey(ctx context.Context, encCtx map[string]string) (plaintext, wrapped []byte, keyID string, err error) {
	var nonce [localNonceSize]byte
	plaintext = make([]byte, dataKeySize)
	// crypto/rand.Read never returns an error; it crashes the program instead.
	rand.Read(plaintext)
	rand.Read(nonce[:])
	wrapped = make([]byte, 0, localWrappedSize)
	wrapped = append(wrapped, localFormatV1)
	wrapped = append(wrapped, nonce[:]...)
	wrapped = l.aead.Seal(wrapped, nonce[:], plaintext, localAD(l.keyID, encCtx))
	return plaintext, wrapped, l.keyID, nil
}

// Decrypt unwraps a data key wrapped by GenerateDataKey under the same KEK
// and encryption context. It returns ErrBadFormat for a malformed wrapped
// key, ErrWrongKey if keyID is not this provider's KEK, and ErrDecrypt if
// authentication fails.
func (l *Local) Decrypt(ctx context.Context, keyID string, wrapped []byte, encCtx map[string]string) ([]byte, error) {
	if len(wrapped) != localWrappedSize {
		return nil, fmt.Errorf("%w: local wrapped key is %d bytes, want %d", ErrBadFormat, len(wrapped), localWrappedSize)
	}
	if wrapped[0] != localFormatV1 {
		return nil, fmt.Errorf("%w: unknown local wrapped key format 0x%02x", ErrBadFormat, wrapped[0])
	}
	if keyID != l.keyID {
		return nil, fmt.Errorf("%w: wrapped under %q, this provider holds %q", ErrWrongKey, keyID, l.keyID)
	}
	nonce := wrapped[1 : 1+localNonceSize]
	plaintext, err := l.aead.Open(nil, nonce, wrapped[1+localNonceSize:], localAD(keyID, encCtx))
	if err != nil {
		return nil, fmt.Errorf("%w: local wrapped key", ErrDecrypt)
	}
	return plaintext, nil
}

// localAD returns the additional data binding a wrapped key to its KEK id and
// encryption context.
func localAD(keyID string, encCtx map[string]string) []byte {
	b := make([]byte, 0, 128)
	b = appendString(b, localADLabel)
	b = appendString(b, keyID)
	return appendContext(b, encCtx)
}
