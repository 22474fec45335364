package client

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

func benchCache(b *testing.B) *Cache {
	b.Helper()
	fetch := func(context.Context, string, Selector) (*Secret, error) {
		return &Secret{Value: []byte("v")}, nil
	}
	c := NewCache(fetch, CacheOptions{TTL: time.Hour, Log: slog.New(slog.DiscardHandler)})
	b.Cleanup(c.Close)
	if _, _, err := c.Get(context.Background(), "bench/secret", Selector{State: "CURRENT"}); err != nil {
		b.Fatal(err)
	}
	return c
}

func BenchmarkCacheHit(b *testing.B) {
	c := benchCache(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, info, _ := c.Get(ctx, "bench/secret", Selector{State: "CURRENT"}); !info.Hit {
			b.Fatal("miss")
		}
	}
}

func BenchmarkCacheHitParallel(b *testing.B) {
	c := benchCache(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, info, _ := c.Get(ctx, "bench/secret", Selector{State: "CURRENT"}); !info.Hit {
				b.Fatal("miss")
			}
		}
	})
}
