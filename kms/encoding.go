package kms

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"slices"
)

// appendString appends s prefixed with its length as a big-endian uint64, so
// that concatenations of encoded strings are unambiguous.
func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
	return append(b, s...)
}

// appendContext appends a canonical encoding of an encryption context: the
// number of pairs, then each key and value length-prefixed, in key order.
func appendContext(b []byte, encCtx map[string]string) []byte {
	keys := make([]string, 0, len(encCtx))
	for k := range encCtx {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = binary.BigEndian.AppendUint64(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendString(b, k)
		b = appendString(b, encCtx[k])
	}
	return b
}

// newGCM returns AES-256-GCM with a standard 12-byte nonce under key. The
// caller may clear key afterwards.
func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
