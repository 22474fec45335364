package kms_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/keyward/keyward/kms"
)

func BenchmarkSeal1KiB(b *testing.B) {
	e := kms.NewEnvelope(newTestLocal(b), kms.CacheOptions{})
	value := bytes.Repeat([]byte{'x'}, 1024)
	ctx := context.Background()
	b.SetBytes(int64(len(value)))
	b.ReportAllocs()
	var version uint64
	for b.Loop() {
		version++
		if _, err := e.Seal(ctx, "bench/secret", version, value); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen1KiB(b *testing.B) {
	e := kms.NewEnvelope(newTestLocal(b), kms.CacheOptions{})
	value := bytes.Repeat([]byte{'x'}, 1024)
	ctx := context.Background()
	s := mustSeal(b, e, "bench/secret", 1, value)
	b.SetBytes(int64(len(value)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Open(ctx, "bench/secret", 1, s); err != nil {
			b.Fatal(err)
		}
	}
	if st := e.Stats(); st.ProviderCalls != 1 || st.CacheMisses != 0 {
		b.Fatalf("Open did not hit the cache: %+v", st)
	}
}
