package store

import (
	"fmt"
	"strings"
)

// Limits on input.
const (
	MaxValueBytes = 64 << 10
	MaxPathBytes  = 512
	MaxDescBytes  = 1024
	MaxListLimit  = 1000
)

// ValidatePath checks a secret path: 1-512 bytes of '/'-separated segments, each made of
// [A-Za-z0-9._-], none empty, "." or "..".
func ValidatePath(p string) error {
	if p == "" {
		return fmt.Errorf("%w: path is empty", ErrInvalidPath)
	}
	if len(p) > MaxPathBytes {
		return fmt.Errorf("%w: path is %d bytes, at most %d", ErrInvalidPath, len(p), MaxPathBytes)
	}
	for i, seg := range strings.Split(p, "/") {
		switch seg {
		case "":
			return fmt.Errorf("%w: segment %d is empty", ErrInvalidPath, i+1)
		case ".", "..":
			return fmt.Errorf("%w: segment %d is %q", ErrInvalidPath, i+1, seg)
		}
		for _, c := range []byte(seg) {
			if !pathChar(c) {
				return fmt.Errorf("%w: segment %d has a character outside [A-Za-z0-9._-]", ErrInvalidPath, i+1)
			}
		}
	}
	return nil
}

func pathChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

func validateValue(v []byte) error {
	if len(v) == 0 {
		return fmt.Errorf("%w: value is empty", ErrInvalidValue)
	}
	if len(v) > MaxValueBytes {
		return fmt.Errorf("%w: value is %d bytes, at most %d", ErrTooLarge, len(v), MaxValueBytes)
	}
	return nil
}
