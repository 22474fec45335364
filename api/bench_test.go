package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// The benchmarks drive a real node (Raft with fsync'd Bolt log, local KEK envelope encryption)
// over real loopback HTTP with keep-alive connections.

var value1KiB = strings.Repeat("k", 1024)

func BenchmarkHTTPWrite1KiB(b *testing.B) {
	_, c := newTestNode(b)
	body := valueBody(value1KiB)

	b.Run("sequential", func(b *testing.B) {
		b.SetBytes(1024)
		for b.Loop() {
			benchSend(b, c, http.MethodPut, "/v1/secrets/bench/seq", body)
		}
		reportOpsPerSec(b)
	})
	// Each goroutine writes its own path (writers of one path would mostly re-seal), so the
	// figure shows how Raft batches concurrent proposals.
	b.Run("parallel", func(b *testing.B) {
		b.SetBytes(1024)
		b.SetParallelism(4)
		var id atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			path := fmt.Sprintf("/v1/secrets/bench/par/%d", id.Add(1))
			for pb.Next() {
				benchSend(b, c, http.MethodPut, path, body)
			}
		})
		reportOpsPerSec(b)
	})
}

func BenchmarkHTTPRead1KiB(b *testing.B) {
	_, c := newTestNode(b)
	c.putValue(b, "bench/read", value1KiB)
	b.SetBytes(1024)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			benchSend(b, c, http.MethodGet, "/v1/secrets/bench/read", nil)
		}
	})
	reportOpsPerSec(b)
}

// benchSend sends one request and fails the benchmark unless it answers 200. It reads the whole
// body so the connection is reused; it is safe in RunParallel (b.Error, not b.Fatal).
func benchSend(b *testing.B, c *apiClient, method, path string, body []byte) {
	r, err := c.send(method, path, "", body)
	if err != nil {
		b.Error(err)
		return
	}
	if r.status != http.StatusOK {
		b.Errorf("%s %s: %s", method, path, r)
	}
}

func reportOpsPerSec(b *testing.B) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, "ops/s")
	}
}
