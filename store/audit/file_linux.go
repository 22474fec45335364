//go:build linux

package audit

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// datasync makes the data written to f durable, together with the metadata needed to read it
// back (a changed file size, newly allocated blocks), but not the modification time: within
// the preallocated, zero-filled space of a segment it has only data to write and no file
// system journal to commit, unlike fsync.
func datasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			serr = unix.Fdatasync(int(fd))
			if !errors.Is(serr, unix.EINTR) {
				return
			}
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: serr}
	}
	return nil
}

// allocate extends f to size bytes of zeros and reserves their blocks (fallocate), so that
// writing into them changes neither the file size nor its block map. With zero set it also
// writes the zeros: fallocate leaves "unwritten" extents, and the first write into one makes
// the next fdatasync commit the file system journal to record its conversion. The zeros are
// not made durable (the caller syncs). Writing the zeros stops early, with errAborted, once
// abort is closed. When fallocate fails (a full disk) the file keeps its old size.
func allocate(f *os.File, size int64, zero bool, abort <-chan struct{}) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	from := st.Size()
	if from >= size {
		return nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		for {
			ferr = unix.Fallocate(int(fd), 0, 0, size)
			if !errors.Is(ferr, unix.EINTR) {
				return
			}
		}
	}); err != nil {
		return err
	}
	switch {
	case ferr == nil:
	case errors.Is(ferr, unix.EOPNOTSUPP) || errors.Is(ferr, unix.ENOSYS):
		zero = true // no reservation: the zeros allocate the blocks
	default:
		// A failed fallocate may have allocated part of the range: give it back.
		_ = f.Truncate(from)
		return &os.PathError{Op: "fallocate", Path: f.Name(), Err: ferr}
	}
	if !zero {
		return nil
	}
	for off := from; off < size; off += int64(len(zeros)) {
		select {
		case <-abort:
			return errAborted
		default:
		}
		if _, err := f.WriteAt(zeros[:min(size-off, int64(len(zeros)))], off); err != nil {
			if ferr != nil {
				_ = f.Truncate(from) // not reserved: do not keep a partial extension
			}
			return err
		}
	}
	return nil
}

// renameNoReplace renames oldpath to newpath, failing if newpath exists.
func renameNoReplace(oldpath, newpath string) error {
	err := unix.Renameat2(unix.AT_FDCWD, oldpath, unix.AT_FDCWD, newpath, unix.RENAME_NOREPLACE)
	if err != nil {
		return &os.LinkError{Op: "renameat2", Old: oldpath, New: newpath, Err: err}
	}
	return nil
}

// spareSegments: segments are prepared ahead as a zero-filled spare file, renamed into place.
const spareSegments = true
