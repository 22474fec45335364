package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/cluster"
	"github.com/keyward/keyward/fsm"
	"github.com/keyward/keyward/kms"
)

// newService wires a real one-node Raft cluster, FSM and local KEK on t.TempDir().
func newService(t *testing.T) *Service {
	t.Helper()
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	machine := fsm.New(nil)
	node, err := cluster.Open(cluster.Config{NodeID: "s1", DataDir: dir, RaftAddr: addr, Bootstrap: true,
		FSM: machine, Noop: fsm.MustEncode(fsm.CmdNoop, fsm.Noop{}), Codec: fsm.Codec{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := node.WaitForLeader(ctx); err != nil {
		t.Fatal(err)
	}
	local, err := kms.NewLocal(filepath.Join(dir, "kek.key"))
	if err != nil {
		t.Fatal(err)
	}
	svc := New(Deps{Proposer: node, State: machine, Reads: node, Sealer: kms.NewEnvelope(local, kms.CacheOptions{})})
	if _, err := svc.Init(ctx, "admin", "", ""); err != nil {
		t.Fatal(err)
	}
	return svc
}

// adminCtx is a request context of the initial admin.
func adminCtx() context.Context {
	return WithCaller(context.Background(), Caller{Type: "USER", ID: "admin", Admin: true, Method: "token"})
}

func u64(v uint64) *uint64 { return &v }

func TestValidatePath(t *testing.T) {
	ok := []string{"a", "prod/payments/db-password", "A.b_c-9/x", strings.Repeat("a", 512), "a/..b/c.", "..a"}
	for _, p := range ok {
		if err := ValidatePath(p); err != nil {
			t.Errorf("ValidatePath(%q) = %v, want nil", p, err)
		}
	}
	bad := []string{"", "/a", "a/", "a//b", ".", "..", "a/./b", "a/../b", "a b", "a*b", "é", "a\x00b",
		strings.Repeat("a", 513), "a/b\n"}
	for _, p := range bad {
		if err := ValidatePath(p); !errors.Is(err, ErrInvalidPath) {
			t.Errorf("ValidatePath(%q) = %v, want ErrInvalidPath", p, err)
		}
	}
}

func TestPutGetSelectors(t *testing.T) {
	s := newService(t)
	ctx := adminCtx()
	for i := 1; i <= 4; i++ {
		res, err := s.Put(ctx, PutInput{Path: "app/key", Value: []byte(fmt.Sprintf("v%d", i))})
		if err != nil {
			t.Fatal(err)
		}
		if res.Version != uint64(i) || res.State != fsm.StateCurrent {
			t.Fatalf("write %d: %+v", i, res)
		}
	}
	cases := []struct {
		sel  Selector
		want string
	}{
		{Selector{}, "v4"},
		{Selector{State: fsm.StateCurrent}, "v4"},
		{Selector{State: fsm.StatePrevious}, "v3"},
		{Selector{State: fsm.StateDeprecated}, "v2"},
		{Selector{Version: 1}, "v1"},
	}
	for _, c := range cases {
		v, err := s.Get(ctx, "app/key", c.sel, ReadOptions{})
		if err != nil {
			t.Fatalf("%+v: %v", c.sel, err)
		}
		if string(v.Plaintext) != c.want {
			t.Fatalf("%+v = %q, want %q", c.sel, v.Plaintext, c.want)
		}
	}
	if _, err := s.Get(ctx, "app/key", Selector{Version: 9}, ReadOptions{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown version: %v", err)
	}
	if _, err := s.Get(ctx, "app/key", Selector{Version: 1, State: fsm.StateCurrent}, ReadOptions{}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("version and state: %v", err)
	}
}

func TestCASAndDeleted(t *testing.T) {
	s := newService(t)
	ctx := adminCtx()
	if _, err := s.Put(ctx, PutInput{Path: "c", Value: []byte("1"), CAS: u64(0)}); err != nil {
		t.Fatal(err)
	}
	_, err := s.Put(ctx, PutInput{Path: "c", Value: []byte("2"), CAS: u64(0)})
	var ce *CASError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCASMismatch) || ce.Current != 1 || ce.Expected != 0 {
		t.Fatalf("cas 0 on existing: %v", err)
	}
	if _, err := s.Put(ctx, PutInput{Path: "c", Value: []byte("2"), CAS: u64(1)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "c", false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, PutInput{Path: "c", Value: []byte("3")}); !errors.Is(err, ErrDeleted) {
		t.Fatalf("write to deleted: %v", err)
	}
	if _, err := s.Get(ctx, "c", Selector{}, ReadOptions{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("read deleted: %v", err)
	}
	if err := s.Undelete(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if err := s.Undelete(ctx, "c"); !errors.Is(err, ErrNotDeleted) {
		t.Fatalf("restore live: %v", err)
	}
	if err := s.Delete(ctx, "c", true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, PutInput{Path: "c", Value: []byte("new"), CAS: u64(0)}); err != nil {
		t.Fatalf("recreate after purge: %v", err)
	}
}

// TestConcurrentWritersReseal: writers racing on one path all succeed; each lost race is
// re-sealed for the next number, and every version opens with its own number.
func TestConcurrentWritersReseal(t *testing.T) {
	s := newService(t)
	ctx := adminCtx()
	var wg sync.WaitGroup
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				if _, err := s.Put(ctx, PutInput{Path: "hot", Value: []byte(fmt.Sprintf("%d-%d", w, i))}); err != nil {
					t.Errorf("put: %v", err)
				}
			}
		}(w)
	}
	wg.Wait()
	md, err := s.Versions(ctx, "hot", ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if md.Secret.LatestVersion != 60 || len(md.Versions) != 60 {
		t.Fatalf("latest %d, %d versions", md.Secret.LatestVersion, len(md.Versions))
	}
	for _, n := range []uint64{60, 59, 55, 51} {
		if _, err := s.Get(ctx, "hot", Selector{Version: n}, ReadOptions{}); err != nil {
			t.Fatalf("version %d: %v", n, err)
		}
	}
}

func TestInputLimits(t *testing.T) {
	s := newService(t)
	ctx := adminCtx()
	if _, err := s.Put(ctx, PutInput{Path: "v", Value: make([]byte, MaxValueBytes+1)}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
	if _, err := s.Put(ctx, PutInput{Path: "v", Value: nil}); !errors.Is(err, ErrInvalidValue) {
		t.Fatalf("empty: %v", err)
	}
	if _, err := s.Put(ctx, PutInput{Path: "v", Value: make([]byte, MaxValueBytes)}); err != nil {
		t.Fatalf("64 KiB: %v", err)
	}
	if _, err := s.List(ctx, "", "", 0, ReadOptions{}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("limit 0: %v", err)
	}
	if _, err := s.Destroy(ctx, "v", []uint64{0}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("destroy 0: %v", err)
	}
}
