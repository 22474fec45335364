package audit_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/keyward/keyward/store/audit"
)

// mountTinyTmpfs mounts a tmpfs of the given size on a fresh directory, or skips the test
// where that is not allowed (not root, no CAP_SYS_ADMIN).
func mountTinyTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// TestDiskFull fills a real file system: Append must fail with ErrUnavailable, never
// acknowledge a record that is not on disk, and work again once there is space.
func TestDiskFull(t *testing.T) {
	mnt := mountTinyTmpfs(t, "128k")
	dir := filepath.Join(mnt, "audit")
	l := openLog(t, audit.Options{Dir: dir})
	acked := appendN(t, l, 1, 10)

	// Take nearly all the space.
	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			break
		}
	}
	f.Close()

	var full error
	for i := 11; i < 5000; i++ {
		r, err := l.Append(context.Background(), rec(i))
		if err != nil {
			full = err
			break
		}
		acked = append(acked, r)
	}
	if !errors.Is(full, audit.ErrUnavailable) {
		t.Fatalf("Append on a full disk: %v, want ErrUnavailable", full)
	}
	t.Logf("disk full after %d records: %v", len(acked), full)
	if _, err := l.Append(context.Background(), rec(6000)); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("second Append on a full disk: %v, want ErrUnavailable", err)
	}

	// Free the space: appends succeed again and the sequence has no gap.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	r := appendN(t, l, 7000, 1)[0]
	if r.NodeSeq != uint64(len(acked)+1) {
		t.Fatalf("Append after freeing space got NodeSeq %d, want %d", r.NodeSeq, len(acked)+1)
	}
	acked = append(acked, r)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l = openLog(t, audit.Options{Dir: dir})
	if l.LastSeq() != uint64(len(acked)) {
		t.Fatalf("LastSeq after reopen %d, want %d", l.LastSeq(), len(acked))
	}
	c := &cluster{t: t}
	run(t, l, c.deps())
	waitFor(t, "all acknowledged records shipped", func() bool { return c.Committed() == uint64(len(acked)) })
	_, applied, _ := c.snapshot()
	checkApplied(t, applied, acked)
}
