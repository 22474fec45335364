package kms

import "context"

// Provider wraps and unwraps data keys with a key-encryption key (KEK) it never exposes.
//
// Implementations are safe for concurrent use.
type Provider interface {
	// Name returns the provider kind: "local" or "awskms".
	Name() string
	// KeyID returns the configured KEK id (local: "local:" + first 16 hex
	// chars of sha256(KEK); awskms: the configured key id, alias or ARN).
	KeyID() string
	// GenerateDataKey returns a fresh random 256-bit data key, its wrapped
	// form, and the id of the KEK that wrapped it.
	GenerateDataKey(ctx context.Context, encCtx map[string]string) (plaintext, wrapped []byte, keyID string, err error)
	// Decrypt unwraps a data key; encCtx must equal the one given when it was
	// generated.
	Decrypt(ctx context.Context, keyID string, wrapped []byte, encCtx map[string]string) ([]byte, error)
}

// dataKeySize is the size in bytes of data keys and of the local KEK (AES-256).
const dataKeySize = 32
