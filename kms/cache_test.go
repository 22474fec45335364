package kms_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/keyward/keyward/kms"
)

func wantStats(tb testing.TB, e *kms.Envelope, want kms.EnvelopeStats) {
	tb.Helper()
	if got := e.Stats(); got != want {
		tb.Fatalf("Stats = %+v, want %+v", got, want)
	}
}

func TestEnvelopeCacheAfterSeal(t *testing.T) {
	p := newTestLocal(t)
	e := kms.NewEnvelope(p, kms.CacheOptions{})
	value := []byte("hot")
	s := mustSeal(t, e, "id", 1, value)
	wantStats(t, e, kms.EnvelopeStats{ProviderCalls: 1})
	for range 3 {
		mustOpen(t, e, "id", 1, s, value)
	}
	wantStats(t, e, kms.EnvelopeStats{ProviderCalls: 1, CacheHits: 3})

	// A cold Envelope asks the provider once, then serves from its cache.
	cold := kms.NewEnvelope(p, kms.CacheOptions{})
	mustOpen(t, cold, "id", 1, s, value)
	mustOpen(t, cold, "id", 1, s, value)
	wantStats(t, cold, kms.EnvelopeStats{ProviderCalls: 1, CacheHits: 1, CacheMisses: 1})
}

func TestEnvelopeCacheTTL(t *testing.T) {
	const ttl = 300 * time.Millisecond
	e := kms.NewEnvelope(newTestLocal(t), kms.CacheOptions{TTL: ttl})
	value := []byte("expiring")
	s := mustSeal(t, e, "id", 1, value)
	mustOpen(t, e, "id", 1, s, value)
	wantStats(t, e, kms.EnvelopeStats{ProviderCalls: 1, CacheHits: 1})

	// Poll until the entry has expired and Open went back to the provider.
	deadline := time.Now().Add(ttl + 5*time.Second)
	for e.Stats().CacheMisses == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("data key still cached long after its TTL: %+v", e.Stats())
		}
		time.Sleep(ttl / 10)
		mustOpen(t, e, "id", 1, s, value)
	}
	st := e.Stats()
	if st.ProviderCalls != 2 || st.CacheMisses != 1 {
		t.Fatalf("after expiry Stats = %+v, want 2 provider calls and 1 miss", st)
	}
	// The re-fetched key is cached again.
	mustOpen(t, e, "id", 1, s, value)
	if got := e.Stats(); got.ProviderCalls != 2 || got.CacheHits != st.CacheHits+1 {
		t.Fatalf("re-fetched key not cached: Stats = %+v", got)
	}
}

func TestEnvelopeCacheSize(t *testing.T) {
	e := kms.NewEnvelope(newTestLocal(t), kms.CacheOptions{Size: 2})
	var sealed []kms.Sealed
	for i := range 3 {
		sealed = append(sealed, mustSeal(t, e, fmt.Sprint("id", i), 1, []byte("v")))
	}
	// The oldest of three keys was evicted from a cache of two.
	mustOpen(t, e, "id2", 1, sealed[2], []byte("v"))
	mustOpen(t, e, "id1", 1, sealed[1], []byte("v"))
	mustOpen(t, e, "id0", 1, sealed[0], []byte("v"))
	wantStats(t, e, kms.EnvelopeStats{ProviderCalls: 4, CacheHits: 2, CacheMisses: 1})
}
