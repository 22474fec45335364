package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// writeFileAtomic writes file through fill so that it is either complete or untouched: into
// file.tmp (mode 0600, created afresh), synced, then renamed over file. On any failure
// file.tmp is removed. what names the file in errors.
func writeFileAtomic(file, what string, fill func(w io.Writer) error) (err error) {
	tmp := file + ".tmp"
	// Start afresh: a left-over file.tmp (or anything planted there) is not written through.
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w", what, err)
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err := fill(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := os.Rename(tmp, file); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	syncDir(filepath.Dir(file))
	return nil
}

// syncDir makes a rename in dir durable, where the file system allows it.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}
