//go:build !linux

package audit

import (
	"errors"
	"os"
)

// datasync makes the data written to f durable.
func datasync(f *os.File) error { return f.Sync() }

// allocate extends f to size bytes of zeros.
func allocate(f *os.File, size int64, zero bool, abort <-chan struct{}) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() >= size {
		return nil
	}
	return f.Truncate(size)
}

// renameNoReplace is not available here: segments are created in place.
func renameNoReplace(oldpath, newpath string) error {
	return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: errors.ErrUnsupported}
}

// spareSegments: no spare segments here (no renameNoReplace).
const spareSegments = false
