package audit_test

import (
	"context"
	"runtime"
	"testing"

	"github.com/keyward/keyward/store/audit"
)

// benchAppendParallel runs Append from parallelism×GOMAXPROCS goroutines.
func benchAppendParallel(b *testing.B, parallelism int) {
	l := openLog(b, audit.Options{Dir: b.TempDir()})
	r := rec(1)
	ctx := context.Background()
	b.SetParallelism(parallelism)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Append(ctx, r); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/float64(l.Stats().Syncs), "records/fsync")
}

func BenchmarkAppendParallel(b *testing.B) {
	benchAppendParallel(b, 16) // many concurrent requests per CPU, as on a busy server
}

// BenchmarkAppendParallel64 runs 64 appending goroutines, as 64 clients on one node.
func BenchmarkAppendParallel64(b *testing.B) {
	benchAppendParallel(b, (64+runtime.GOMAXPROCS(0)-1)/runtime.GOMAXPROCS(0))
}

func BenchmarkAppendSerial(b *testing.B) {
	l := openLog(b, audit.Options{Dir: b.TempDir()})
	r := rec(1)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := l.Append(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/float64(l.Stats().Syncs), "records/fsync")
}
