package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/keyward/keyward/api/client"
)

// benchNode is one server and the client its workers share.
type benchNode struct {
	addr string
	c    *client.Client
}

// benchOpStats is what one worker saw of one kind of operation: the latency of the successful
// ones and the failures by error code, with the first message of each code.
type benchOpStats struct {
	hist     latencyHistogram
	errors   map[string]uint64
	examples map[string]string
}

// fail counts err under its code.
func (s *benchOpStats) fail(err error) {
	code := benchErrCode(err)
	if s.errors == nil {
		s.errors, s.examples = map[string]uint64{}, map[string]string{}
	}
	if s.errors[code]++; s.errors[code] == 1 {
		s.examples[code] = err.Error()
	}
}

// merge adds o to s.
func (s *benchOpStats) merge(o *benchOpStats) {
	s.hist.merge(&o.hist)
	for code, n := range o.errors {
		if s.errors == nil {
			s.errors, s.examples = map[string]uint64{}, map[string]string{}
		}
		if _, ok := s.examples[code]; !ok {
			s.examples[code] = o.examples[code]
		}
		s.errors[code] += n
	}
}

// errorCount returns the number of failures.
func (s *benchOpStats) errorCount() uint64 {
	var n uint64
	for _, c := range s.errors {
		n += c
	}
	return n
}

// benchErrCode names the kind of err: the API error code, or a short name for a failure below the
// API.
func benchErrCode(err error) string {
	if ae, ok := errors.AsType[*client.APIError](err); ok {
		return ae.Code
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection_refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection_reset"
	case errors.Is(err, client.ErrMalformedResponse):
		return "malformed_response"
	case errors.Is(err, client.ErrResponseTooLarge):
		return "response_too_large"
	}
	return "transport"
}

// benchRetryable reports whether a setup write that failed with err is worth trying again: the
// cluster was briefly unavailable rather than the request being wrong.
func benchRetryable(err error) bool {
	if ae, ok := errors.AsType[*client.APIError](err); ok {
		return ae.Status == 503
	}
	return !errors.Is(err, context.Canceled) && !errors.Is(err, client.ErrInvalidPath)
}

// benchValueAlphabet holds the bytes of generated values: 64 printable ASCII characters, so a value
// travels as a JSON string of exactly --value-size bytes.
const benchValueAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// fillBenchValue fills buf with random characters of benchValueAlphabet.
func fillBenchValue(rng *rand.Rand, buf []byte) {
	for i := 0; i < len(buf); {
		u := rng.Uint64()
		for j := 0; j < 10 && i < len(buf); j++ {
			buf[i] = benchValueAlphabet[u&63]
			u >>= 6
			i++
		}
	}
}

// newBenchRand returns a generator seeded from the runtime's random source.
func newBenchRand() *rand.Rand {
	return rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
}

// benchWriteAllResult is the outcome of benchWriteAll.
type benchWriteAllResult struct {
	stats   benchOpStats // latencies of the successful writes (last attempt) and every failure
	written int          // acknowledged writes
	failed  int          // paths that stayed unwritten
	elapsed time.Duration
}

// benchWriteAll writes one random value of size bytes to path(i) for every i in [0, n), with
// concurrency workers spread round-robin over nodes. A path whose write fails with a
// retryable error (see benchRetryable) is tried up to attempts times in all.
func benchWriteAll(ctx context.Context, nodes []benchNode, concurrency, n int, path func(int) string, size, attempts int) benchWriteAllResult {
	var next atomic.Int64
	stats := make([]benchOpStats, concurrency)
	failed := make([]int, concurrency)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range concurrency {
		wg.Go(func() {
			c, rng, buf, st := nodes[w%len(nodes)].c, newBenchRand(), make([]byte, size), &stats[w]
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				ok := false
				for a := 1; a <= attempts && ctx.Err() == nil; a++ {
					fillBenchValue(rng, buf)
					t0 := time.Now()
					_, err := c.Put(ctx, path(i), buf, client.PutOptions{})
					if err == nil {
						st.hist.record(time.Since(t0))
						ok = true
						break
					}
					if ctx.Err() != nil {
						break
					}
					st.fail(err)
					if !benchRetryable(err) || a == attempts {
						break
					}
					select {
					case <-ctx.Done():
					case <-time.After(time.Duration(a) * 100 * time.Millisecond):
					}
				}
				if !ok {
					failed[w]++
				}
			}
		})
	}
	wg.Wait()
	res := benchWriteAllResult{elapsed: time.Since(start)}
	for w := range concurrency {
		res.stats.merge(&stats[w])
		res.failed += failed[w]
	}
	res.written = int(res.stats.hist.count())
	return res
}

// benchKey returns the path of key i of a timed run.
func benchKey(prefix string, i int) string {
	return prefix + strconv.Itoa(i)
}

// benchRun is a timed run of `keyward bench`.
func (x cli) benchRun(ctx context.Context, cfg benchConfig, nodes []benchNode) int {
	if !cfg.json {
		fmt.Fprintf(x.stderr, "bench: writing %d keys under %s...\n", cfg.keys, cfg.prefix)
	}
	const setupAttempts = 5
	pre := benchWriteAll(ctx, nodes, min(cfg.concurrency, cfg.keys), cfg.keys,
		func(i int) string { return benchKey(cfg.prefix, i) }, cfg.valueSize, setupAttempts)
	if ctx.Err() != nil {
		fmt.Fprintln(x.stderr, "error: interrupted during setup")
		return 1
	}
	if pre.failed > 0 {
		fmt.Fprintf(x.stderr, "error: setup failed: %d of %d keys could not be written%s\n",
			pre.failed, cfg.keys, benchFirstErrors(&pre.stats))
		return 1
	}

	if !cfg.json {
		fmt.Fprintf(x.stderr, "bench: running %d workers on %s for %v + %v warmup...\n",
			cfg.concurrency, benchPlural(len(nodes), "node"), cfg.duration, cfg.warmup)
	}
	stats := make([][numBenchOps]benchOpStats, cfg.concurrency)
	measureFrom := time.Now().Add(cfg.warmup)
	end := measureFrom.Add(cfg.duration)
	var wg sync.WaitGroup
	for w := range cfg.concurrency {
		wg.Go(func() {
			c, rng, buf, st := nodes[w%len(nodes)].c, newBenchRand(), make([]byte, cfg.valueSize), &stats[w]
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				op, key := cfg.mix.pick(rng.IntN(100)), benchKey(cfg.prefix, rng.IntN(cfg.keys))
				var err error
				switch op {
				case opWrite:
					fillBenchValue(rng, buf)
					_, err = c.Put(ctx, key, buf, client.PutOptions{})
				case opRead:
					_, err = c.GetWith(ctx, key, client.Selector{}, client.ReadOptions{})
				case opStaleRead:
					_, err = c.GetWith(ctx, key, client.Selector{}, client.ReadOptions{Stale: true})
				}
				d := time.Since(t0)
				switch {
				case t0.Before(measureFrom) || ctx.Err() != nil:
					// warmup, or cut short by an interrupt
				case err != nil:
					st[op].fail(err)
				default:
					st[op].hist.record(d)
				}
			}
		})
	}
	wg.Wait()
	elapsed := max(time.Since(measureFrom), 0)

	var merged [numBenchOps]benchOpStats
	for w := range stats {
		for op := range numBenchOps {
			merged[op].merge(&stats[w][op])
		}
	}
	rep := benchReport{Mode: "run", Nodes: cfg.addrs, Concurrency: cfg.concurrency,
		DurationS: cfg.duration.Seconds(), WarmupS: cfg.warmup.Seconds(), ElapsedS: benchRound(elapsed.Seconds(), 3),
		Keys: cfg.keys, ValueSize: cfg.valueSize, Prefix: cfg.prefix, Mix: cfg.mix,
		Ops: []benchOpReport{}, Interrupted: ctx.Err() != nil}
	var total benchOpStats
	for op := range numBenchOps {
		if cfg.mix.percent(op) == 0 {
			continue
		}
		rep.Ops = append(rep.Ops, newBenchOpReport(op.String(), &merged[op], elapsed))
		total.merge(&merged[op])
	}
	rep.Total = newBenchOpReport("total", &total, elapsed)

	if err := x.printBenchReport(cfg, &rep); err != nil {
		fmt.Fprintf(x.stderr, "error: %v\n", err)
		return 1
	}
	switch {
	case rep.Interrupted:
		fmt.Fprintln(x.stderr, "error: interrupted")
		return 1
	case rep.Total.Count == 0:
		fmt.Fprintf(x.stderr, "error: no operation succeeded%s\n", benchFirstErrors(&total))
		return 1
	}
	return 0
}

// benchFirstErrors describes the most frequent error codes of s with an example message each, as
// ": code (example); ...", or "" when there is none.
func benchFirstErrors(s *benchOpStats) string {
	codes := benchSortedCodes(s.errors)
	if len(codes) == 0 {
		return ""
	}
	out := ""
	for i, c := range codes[:min(len(codes), 3)] {
		sep := "; "
		if i == 0 {
			sep = ": "
		}
		out += fmt.Sprintf("%s%d × %s (%s)", sep, s.errors[c], c, s.examples[c])
	}
	return out
}

// benchSortedCodes returns the codes of m, most frequent first, then by name.
func benchSortedCodes(m map[string]uint64) []string {
	codes := make([]string, 0, len(m))
	for c := range m {
		codes = append(codes, c)
	}
	sort.Slice(codes, func(i, j int) bool {
		if m[codes[i]] != m[codes[j]] {
			return m[codes[i]] > m[codes[j]]
		}
		return codes[i] < codes[j]
	})
	return codes
}
