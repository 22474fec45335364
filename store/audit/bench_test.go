package audit_test

import (
	"context"
	"testing"

	"github.com/keyward/keyward/store/audit"
)

func BenchmarkAppendParallel(b *testing.B) {
	l := openLog(b, audit.Options{Dir: b.TempDir()})
	r := rec(1)
	ctx := context.Background()
	b.SetParallelism(16) // many concurrent requests per CPU, as on a busy server
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
	b.ReportMetric(float64(b.N)/float64(l.Fsyncs()), "records/fsync")
}

func BenchmarkAppendSerial(b *testing.B) {
	l := openLog(b, audit.Options{Dir: b.TempDir()})
	r := rec(1)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if _, err := l.Append(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/float64(l.Fsyncs()), "records/fsync")
}
