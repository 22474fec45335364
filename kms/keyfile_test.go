package kms_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"

	"github.com/keyward/keyward/kms"
)

func TestNewLocalCreatesKeyFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	path := filepath.Join(dir, "kek")
	p, err := kms.NewLocal(path)
	if err != nil {
		t.Fatalf("NewLocal: %v", err)
	}

	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode = %04o, want 0600", perm)
	}
	for _, d := range []string{dir, filepath.Dir(dir)} {
		info, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if perm := info.Mode().Perm(); perm != 0o700 {
			t.Errorf("directory %s mode = %04o, want 0700", d, perm)
		}
	}

	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{64}\n$`).Match(content) {
		t.Fatalf("key file content is not 64 hex characters and a newline (%d bytes)", len(content))
	}
	kek, _ := hex.DecodeString(string(content[:64]))
	sum := sha256.Sum256(kek)
	if want := "local:" + hex.EncodeToString(sum[:])[:16]; p.KeyID() != want {
		t.Errorf("KeyID = %q, want %q", p.KeyID(), want)
	}
	if p.Name() != "local" {
		t.Errorf("Name = %q, want local", p.Name())
	}

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the key file (temporary file left behind?)", len(entries))
	}
}

func TestNewLocalReusesKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kek")
	p1, err := kms.NewLocal(path)
	if err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := kms.NewLocal(path)
	if err != nil {
		t.Fatalf("second NewLocal: %v", err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("second NewLocal rewrote the key file")
	}
	if p1.KeyID() != p2.KeyID() {
		t.Fatalf("KeyID changed: %q then %q", p1.KeyID(), p2.KeyID())
	}

	ctx := context.Background()
	encCtx := map[string]string{"k": "v"}
	pt, wrapped, keyID, err := p1.GenerateDataKey(ctx, encCtx)
	if err != nil {
		t.Fatal(err)
	}
	got, err := p2.Decrypt(ctx, keyID, wrapped, encCtx)
	if err != nil {
		t.Fatalf("reopened provider cannot unwrap: %v", err)
	}
	if !bytes.Equal(got, pt) {
		t.Fatal("reopened provider unwrapped a different key")
	}
}

func TestNewLocalConcurrentCreation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kek")
	const n = 8
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			p, err := kms.NewLocal(path)
			if err == nil {
				ids[i] = p.KeyID()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("NewLocal #%d: %v", i, errs[i])
		}
		if ids[i] != ids[0] {
			t.Fatalf("concurrent NewLocal calls got different KEKs: %q and %q", ids[0], ids[i])
		}
	}
}

func TestNewLocalRefusesBadKeyFiles(t *testing.T) {
	validHex := bytes.Repeat([]byte("ab"), 32)
	tests := []struct {
		name    string
		content []byte
		mode    os.FileMode
	}{
		{"group and other readable", append(validHex, '\n'), 0o644},
		{"group readable", append(validHex, '\n'), 0o640},
		{"other writable", append(validHex, '\n'), 0o602},
		{"31 bytes", append(bytes.Repeat([]byte("cd"), 31), '\n'), 0o600},
		{"33 bytes", append(bytes.Repeat([]byte("cd"), 33), '\n'), 0o600},
		{"empty", nil, 0o600},
		{"not hex", append(bytes.Repeat([]byte("zq"), 32), '\n'), 0o600},
		{"raw bytes", bytes.Repeat([]byte{0xab}, 32), 0o600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "kek")
			if err := os.WriteFile(path, tt.content, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			_, err := kms.NewLocal(path)
			wantErr(t, err, kms.ErrKeyFile, bytes.TrimSpace(tt.content))
			after, rerr := os.ReadFile(path)
			if rerr != nil || !bytes.Equal(after, tt.content) {
				t.Fatal("refused key file was modified")
			}
		})
	}
}

func TestNewLocalRefusesDirectory(t *testing.T) {
	_, err := kms.NewLocal(t.TempDir())
	wantErr(t, err, kms.ErrKeyFile, nil)
}
