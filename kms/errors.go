package kms

import "errors"

// Sentinel errors. Errors returned by this package wrap one of these (test with
// errors.Is) and never contain plaintext data keys or secret values.
var (
	// ErrDecrypt reports that a wrapped key or a ciphertext failed
	// authentication: it was tampered with, moved to another secret or
	// version, or is being opened with the wrong KEK or encryption context.
	ErrDecrypt = errors.New("kms: decryption failed")

	// ErrUnavailable reports that the KEK provider could not be reached or
	// refused the call (network failure, timeout, throttling, access denied,
	// disabled key, ...). Such failures may be transient.
	ErrUnavailable = errors.New("kms: key provider unavailable")

	// ErrBadFormat reports an unknown format byte or a truncated input.
	ErrBadFormat = errors.New("kms: bad format")

	// ErrWrongKey reports that a wrapped key names a KEK, or a provider, that
	// this provider does not hold.
	ErrWrongKey = errors.New("kms: wrong key-encryption key")

	// ErrKeyFile reports a local key file that cannot be used: it has the
	// wrong length or encoding, is not a regular file, or is accessible by
	// group or other.
	ErrKeyFile = errors.New("kms: unusable key file")
)
