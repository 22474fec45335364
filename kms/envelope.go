package kms

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strconv"
	"sync/atomic"
)

const (
	// sealedFormatV1 is the first byte of a Sealed.Ciphertext.
	sealedFormatV1 byte = 0x01
	// sealedNonceSize is the GCM nonce size of a Sealed.Ciphertext.
	sealedNonceSize = 12
	// sealedOverhead is the size of a Sealed.Ciphertext beyond its plaintext:
	// format byte, nonce and GCM tag.
	sealedOverhead = 1 + sealedNonceSize + 16
	// sealedADLabel starts the additional data of a Sealed.Ciphertext.
	sealedADLabel = "keyward/v1"

	// Encryption context keys given to the provider.
	encCtxSecretID = "keyward:secret_id"
	encCtxVersion  = "keyward:version"
)

// Sealed is a secret value sealed by an Envelope, with everything needed to
// open it again except the KEK.
type Sealed struct {
	// Ciphertext is format byte 0x01, a 12-byte random nonce, and the
	// AES-256-GCM sealed value.
	Ciphertext []byte
	// WrappedKey is the data key wrapped by the provider.
	WrappedKey []byte
	// KeyID names the KEK that wrapped the data key.
	KeyID string
	// Provider is the Name of the provider that wrapped the data key.
	Provider string
}

// EnvelopeStats counts an Envelope's provider calls and data key cache use.
type EnvelopeStats struct {
	// ProviderCalls counts GenerateDataKey and Decrypt calls, failed or not.
	ProviderCalls uint64
	// CacheHits counts Opens that found their data key in the cache.
	CacheHits uint64
	// CacheMisses counts Opens that had to ask the provider.
	CacheMisses uint64
}

// Envelope seals values with a fresh data key per version (never reused) and
// caches unwrapped data keys. It is safe for concurrent use.
type Envelope struct {
	p     Provider
	cache *keyCache

	providerCalls atomic.Uint64
	cacheHits     atomic.Uint64
	cacheMisses   atomic.Uint64
}

// NewEnvelope returns an Envelope sealing with data keys from p, which must
// not be nil. Zero fields of opts take their defaults (10000 entries, 5
// minutes).
//
// The cache starts a background goroutine that expires entries and lives as
// long as the process, so create one Envelope per provider and reuse it.
func NewEnvelope(p Provider, opts CacheOptions) *Envelope {
	if p == nil {
		panic("kms: NewEnvelope with nil Provider")
	}
	return &Envelope{p: p, cache: newKeyCache(opts)}
}

// Provider returns the Provider the Envelope was created with.
func (e *Envelope) Provider() Provider { return e.p }

// Stats returns the Envelope's counters.
func (e *Envelope) Stats() EnvelopeStats {
	return EnvelopeStats{
		ProviderCalls: e.providerCalls.Load(),
		CacheHits:     e.cacheHits.Load(),
		CacheMisses:   e.cacheMisses.Load(),
	}
}

// Seal encrypts plaintext as the given version of the given secret under a
// freshly generated data key. The result opens only with the same secretID
// and version. The data key is cached so that opening it soon after needs no
// provider call.
func (e *Envelope) Seal(ctx context.Context, secretID string, version uint64, plaintext []byte) (Sealed, error) {
	e.providerCalls.Add(1)
	dataKey, wrapped, keyID, err := e.p.GenerateDataKey(ctx, encryptionContext(secretID, version))
	defer clear(dataKey)
	if err != nil {
		return Sealed{}, fmt.Errorf("kms: seal %q version %d: generate data key: %w", secretID, version, err)
	}
	if len(dataKey) != dataKeySize || len(wrapped) == 0 {
		return Sealed{}, fmt.Errorf("kms: seal %q version %d: provider %s returned a %d-byte data key and a %d-byte wrapped key",
			secretID, version, e.p.Name(), len(dataKey), len(wrapped))
	}
	aead, err := newGCM(dataKey)
	if err != nil {
		return Sealed{}, fmt.Errorf("kms: seal %q version %d: %w", secretID, version, err)
	}

	var nonce [sealedNonceSize]byte
	rand.Read(nonce[:]) // never returns an error; crashes the program instead
	ct := make([]byte, 0, sealedOverhead+len(plaintext))
	ct = append(ct, sealedFormatV1)
	ct = append(ct, nonce[:]...)
	ct = aead.Seal(ct, nonce[:], plaintext, sealedAD(secretID, version))

	e.cache.add(cacheKeyFor(keyID, wrapped, secretID, version), aead)
	return Sealed{Ciphertext: ct, WrappedKey: wrapped, KeyID: keyID, Provider: e.p.Name()}, nil
}

// Open decrypts s as the given version of the given secret. It returns
// ErrBadFormat for a malformed s, ErrWrongKey if s was wrapped by another
// provider or KEK, ErrDecrypt if s was tampered with or belongs to another
// secret or version, and ErrUnavailable if the provider could not be reached.
// The format byte and lengths are checked before the cache or the provider
// is consulted. An empty s.Provider is accepted; the provider then checks
// s.KeyID.
func (e *Envelope) Open(ctx context.Context, secretID string, version uint64, s Sealed) ([]byte, error) {
	if len(s.Ciphertext) < sealedOverhead {
		return nil, fmt.Errorf("%w: ciphertext is %d bytes, want at least %d", ErrBadFormat, len(s.Ciphertext), sealedOverhead)
	}
	if s.Ciphertext[0] != sealedFormatV1 {
		return nil, fmt.Errorf("%w: unknown ciphertext format 0x%02x", ErrBadFormat, s.Ciphertext[0])
	}
	if len(s.WrappedKey) == 0 {
		return nil, fmt.Errorf("%w: empty wrapped key", ErrBadFormat)
	}
	if s.Provider != "" && s.Provider != e.p.Name() {
		return nil, fmt.Errorf("%w: sealed by provider %q, not %q", ErrWrongKey, s.Provider, e.p.Name())
	}

	aead, err := e.dataKey(ctx, secretID, version, s)
	if err != nil {
		return nil, fmt.Errorf("kms: open %q version %d: %w", secretID, version, err)
	}
	nonce := s.Ciphertext[1 : 1+sealedNonceSize]
	plaintext, err := aead.Open(nil, nonce, s.Ciphertext[1+sealedNonceSize:], sealedAD(secretID, version))
	if err != nil {
		return nil, fmt.Errorf("kms: open %q version %d: %w: ciphertext", secretID, version, ErrDecrypt)
	}
	return plaintext, nil
}

// dataKey returns the AEAD for the data key of s, from the cache or else
// from the provider.
func (e *Envelope) dataKey(ctx context.Context, secretID string, version uint64, s Sealed) (cipher.AEAD, error) {
	ck := cacheKeyFor(s.KeyID, s.WrappedKey, secretID, version)
	if aead, ok := e.cache.get(ck); ok {
		e.cacheHits.Add(1)
		return aead, nil
	}
	e.cacheMisses.Add(1)
	e.providerCalls.Add(1)
	dataKey, err := e.p.Decrypt(ctx, s.KeyID, s.WrappedKey, encryptionContext(secretID, version))
	defer clear(dataKey)
	if err != nil {
		return nil, fmt.Errorf("unwrap data key: %w", err)
	}
	if len(dataKey) != dataKeySize {
		return nil, fmt.Errorf("%w: provider %s returned a %d-byte data key", ErrDecrypt, e.p.Name(), len(dataKey))
	}
	aead, err := newGCM(dataKey)
	if err != nil {
		return nil, err
	}
	e.cache.add(ck, aead)
	return aead, nil
}

// encryptionContext returns the encryption context given to the provider for
// a secret version.
func encryptionContext(secretID string, version uint64) map[string]string {
	return map[string]string{
		encCtxSecretID: secretID,
		encCtxVersion:  strconv.FormatUint(version, 10),
	}
}

// sealedAD returns the additional data binding a ciphertext to its secret id
// and version.
func sealedAD(secretID string, version uint64) []byte {
	b := make([]byte, 0, 8+len(sealedADLabel)+8+len(secretID)+8)
	b = appendString(b, sealedADLabel)
	b = appendString(b, secretID)
	return binary.BigEndian.AppendUint64(b, version)
}
