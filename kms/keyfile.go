package kms

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// maxKeyFileSize bounds how much of a key file is read; a valid one is 65 bytes.
const maxKeyFileSize = 1024

// loadOrCreateKeyFile returns the KEK stored at path, creating the file with
// a fresh random KEK if it does not exist. The caller must clear the result.
func loadOrCreateKeyFile(path string) ([]byte, error) {
	kek, err := readKeyFile(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return kek, err
	}
	kek, err = createKeyFile(path)
	if errors.Is(err, fs.ErrExist) {
		// Another process created it first; use theirs.
		return readKeyFile(path)
	}
	return kek, err
}

// readKeyFile reads a hex-encoded 256-bit KEK, refusing files that group or
// other may access.
func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("kms: open key file: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("kms: stat key file: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrKeyFile, path)
	}
	// Windows does not report Unix permission bits.
	if perm := info.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("%w: %s is accessible by group or other (mode %04o); run chmod 600 on it",
			ErrKeyFile, path, perm)
	}
	raw, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	defer clear(raw)
	if err != nil {
		return nil, fmt.Errorf("kms: read key file: %w", err)
	}
	text := bytes.TrimSpace(raw)
	kek := make([]byte, dataKeySize)
	// The decoding error is not wrapped: it would quote key material.
	if len(text) != hex.EncodedLen(dataKeySize) {
		clear(kek)
		return nil, fmt.Errorf("%w: %s must hold exactly %d hex-encoded bytes", ErrKeyFile, path, dataKeySize)
	}
	if _, err := hex.Decode(kek, text); err != nil {
		clear(kek)
		return nil, fmt.Errorf("%w: %s is not valid hex", ErrKeyFile, path)
	}
	return kek, nil
}

// createKeyFile writes a fresh random KEK to path atomically: it is written to
// a temporary file in the same directory, synced, then hard-linked into
// place, so the file never appears partially written and an existing file is
// never overwritten (an error wrapping fs.ErrExist is returned instead).
func createKeyFile(path string) (kek []byte, err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("kms: create key file directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("kms: create key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()

	kek = make([]byte, dataKeySize)
	defer func() {
		if err != nil {
			clear(kek)
			kek = nil
		}
	}()
	if _, err := rand.Read(kek); err != nil {
		return nil, fmt.Errorf("kms: generate key: %w", err)
	}
	text := make([]byte, hex.EncodedLen(dataKeySize)+1)
	defer clear(text)
	hex.Encode(text, kek)
	text[len(text)-1] = '\n'

	if err := tmp.Chmod(0o600); err != nil {
		return nil, fmt.Errorf("kms: create key file: %w", err)
	}
	if _, err := tmp.Write(text); err != nil {
		return nil, fmt.Errorf("kms: write key file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return nil, fmt.Errorf("kms: write key file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("kms: write key file: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return nil, fmt.Errorf("kms: install key file: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return nil, fmt.Errorf("kms: install key file: %w", err)
	}
	return kek, nil
}

// syncDir flushes a directory entry to stable storage where supported.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
