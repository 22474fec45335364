package seqid

import (
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
)

func TestIDsAreUniqueVersion8UUIDs(t *testing.T) {
	a, b := New(), New()
	seen := map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, g := range []*Gen{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5000 {
				id := g.Next()
				mu.Lock()
				dup := seen[id]
				seen[id] = true
				mu.Unlock()
				if dup {
					t.Errorf("id %s made twice", id)
					return
				}
			}
		}()
	}
	wg.Wait()
	if len(seen) != 20000 {
		t.Fatalf("%d distinct ids, want 20000", len(seen))
	}
	for id := range seen {
		u, err := uuid.Parse(id)
		if err != nil {
			t.Fatalf("%q is not a UUID: %v", id, err)
		}
		if u.Version() != 8 || u.Variant() != uuid.RFC4122 {
			t.Fatalf("%s: version %d variant %v, want 8 and RFC 4122", id, u.Version(), u.Variant())
		}
	}
}

func TestConsecutiveIDsShareTheirPrefix(t *testing.T) {
	g := New()
	first, second := g.Next(), g.Next()
	if first[:19] != second[:19] || first == second {
		t.Fatalf("ids %s and %s: want the same first 19 characters and a different counter", first, second)
	}
	if other := New().Next(); strings.HasPrefix(other, first[:19]) {
		t.Fatalf("two generators drew the same prefix: %s and %s", first, other)
	}
}
