package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.t = f.t.Add(d)
}

// fakeFetch answers with a secret whose value counts the fetches, or with err when set.
type fakeFetch struct {
	calls atomic.Int64
	mu    sync.Mutex
	err   error
	gate  chan struct{} // when non-nil, fetches block until it is closed
}

func (f *fakeFetch) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeFetch) fetch(ctx context.Context, path string, sel Selector) (*Secret, error) {
	n := f.calls.Add(1)
	f.mu.Lock()
	err, gate := f.err, f.gate
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err != nil {
		return nil, err
	}
	s := &Secret{Value: fmt.Appendf(nil, "%s@%d#%d", path, sel.Version, n)}
	return s, nil
}

func newTestCache(t *testing.T, o CacheOptions) (*Cache, *fakeFetch, *fakeClock) {
	t.Helper()
	return newTestCacheLoop(t, o, true)
}

func newTestCacheLoop(t *testing.T, o CacheOptions, refreshLoop bool) (*Cache, *fakeFetch, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	ff := &fakeFetch{}
	o.Now = clk.Now
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	c := newCache(ff.fetch, o, refreshLoop)
	t.Cleanup(c.Close)
	return c, ff, clk
}

func mustGet(t *testing.T, c *Cache, path string, sel Selector) (string, CacheInfo) {
	t.Helper()
	s, info, err := c.Get(context.Background(), path, sel)
	if err != nil {
		t.Fatalf("Get(%s): %v", path, err)
	}
	return string(s.Value), info
}

func TestCacheHitMakesNoFetch(t *testing.T) {
	c, ff, clk := newTestCache(t, CacheOptions{TTL: time.Hour})
	v1, info := mustGet(t, c, "db/pass", Selector{})
	if info.Hit || info.Stale || v1 != "db/pass@0#1" {
		t.Fatalf("first Get = %q %+v, want a miss", v1, info)
	}
	clk.Advance(time.Minute)
	v2, info := mustGet(t, c, "db/pass", Selector{})
	if !info.Hit || info.Stale || v2 != v1 || info.Age != time.Minute {
		t.Fatalf("second Get = %q %+v, want hit of %q aged 1m", v2, info, v1)
	}
	// Another selector is another key.
	if v, info := mustGet(t, c, "db/pass", Selector{Version: 3}); info.Hit || v != "db/pass@3#2" {
		t.Fatalf("other selector = %q %+v", v, info)
	}
	if n := ff.calls.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2", n)
	}
	if s := c.Stats(); s.Hits != 1 || s.Misses != 2 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestCacheTTLExpiryRefetches(t *testing.T) {
	c, ff, clk := newTestCache(t, CacheOptions{TTL: 10 * time.Second})
	mustGet(t, c, "a", Selector{})
	clk.Advance(8 * time.Second) // under the jittered minimum 9s
	if _, info := mustGet(t, c, "a", Selector{}); !info.Hit {
		t.Fatalf("at 8s: %+v, want hit", info)
	}
	clk.Advance(3100 * time.Millisecond) // past the jittered maximum 11s
	v, info := mustGet(t, c, "a", Selector{})
	if info.Hit || v != "a@0#2" {
		t.Fatalf("at 11.1s: %q %+v, want refetch", v, info)
	}
	if n := ff.calls.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2", n)
	}
}

func TestCacheTTLJitter(t *testing.T) {
	c, _, _ := newTestCache(t, CacheOptions{TTL: 100 * time.Second})
	seen := map[time.Duration]bool{}
	for i := range 50 {
		mustGet(t, c, fmt.Sprint("k", i), Selector{})
	}
	c.mu.RLock()
	for _, e := range c.entries {
		ttl := e.expires.Sub(e.fetched)
		if ttl < 90*time.Second || ttl > 110*time.Second {
			t.Errorf("ttl %v outside ±10%%", ttl)
		}
		seen[ttl] = true
	}
	c.mu.RUnlock()
	if len(seen) < 2 {
		t.Fatalf("no jitter: %v", seen)
	}
}

func TestCacheSingleFlight(t *testing.T) {
	c, ff, _ := newTestCache(t, CacheOptions{})
	gate := make(chan struct{})
	ff.gate = gate
	const n = 100
	var started, done sync.WaitGroup
	vals := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		started.Add(1)
		done.Go(func() {
			started.Done()
			s, _, err := c.Get(context.Background(), "shared", Selector{})
			errs[i] = err
			if s != nil {
				vals[i] = string(s.Value)
			}
		})
	}
	started.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for ff.calls.Load() == 0 || c.Stats().Misses < n/2 {
		if time.Now().After(deadline) {
			t.Fatalf("callers did not arrive: %+v", c.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	close(gate)
	done.Wait()
	for i := range n {
		if errs[i] != nil || vals[i] != "shared@0#1" {
			t.Fatalf("caller %d: %q %v", i, vals[i], errs[i])
		}
	}
	if got := ff.calls.Load(); got != 1 {
		t.Fatalf("fetches = %d, want 1", got)
	}
}

func TestCacheWaiterContextEnds(t *testing.T) {
	c, ff, _ := newTestCache(t, CacheOptions{})
	gate := make(chan struct{})
	ff.gate = gate
	leaderDone := make(chan error, 1)
	go func() {
		_, _, err := c.Get(context.Background(), "slow", Selector{})
		leaderDone <- err
	}()
	for ff.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, _, err := c.Get(ctx, "slow", Selector{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiter err = %v, want deadline (nothing cached)", err)
	}
	close(gate)
	if err := <-leaderDone; err != nil {
		t.Fatal(err)
	}
}

func outageErrors() map[string]error {
	return map[string]error{
		"network":  fmt.Errorf("send request: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}),
		"deadline": fmt.Errorf("send request: %w", context.DeadlineExceeded),
		"503":      &APIError{Status: 503, Code: "no_leader", Message: "no leader"},
		"429":      &APIError{Status: 429, Code: "rate_limited", Message: "slow down"},
	}
}

func TestCacheOutageServesStale(t *testing.T) {
	for name, outage := range outageErrors() {
		t.Run(name, func(t *testing.T) {
			var logBuf syncBuffer
			c, ff, clk := newTestCache(t, CacheOptions{TTL: time.Minute, StaleAlert: 10 * time.Minute,
				Log: slog.New(slog.NewTextHandler(&logBuf, nil))})
			v1, _ := mustGet(t, c, "svc/key", Selector{})
			ff.setErr(outage)
			clk.Advance(2 * time.Minute)
			v, info := mustGet(t, c, "svc/key", Selector{})
			if v != v1 || !info.Stale || info.Hit || info.Age != 2*time.Minute {
				t.Fatalf("during outage: %q %+v, want stale %q aged 2m", v, info, v1)
			}
			if s := c.Stats(); s.Alert || s.MaxStaleAge != 2*time.Minute || s.StaleServes != 1 {
				t.Fatalf("stats at 2m = %+v", s)
			}
			clk.Advance(9 * time.Minute)
			v, info = mustGet(t, c, "svc/key", Selector{})
			if v != v1 || !info.Stale || info.Age != 11*time.Minute {
				t.Fatalf("at 11m: %q %+v", v, info)
			}
			clk.Advance(time.Minute)
			if _, info = mustGet(t, c, "svc/key", Selector{}); info.Age != 12*time.Minute {
				t.Fatalf("at 12m: %+v", info)
			}
			if s := c.Stats(); !s.Alert || s.MaxStaleAge != 12*time.Minute || s.StaleServes != 3 {
				t.Fatalf("stats at 12m = %+v, want alert", s)
			}
			if n := strings.Count(logBuf.String(), "level=WARN"); n != 1 {
				t.Fatalf("%d warnings, want 1:\n%s", n, logBuf.String())
			}
			if strings.Contains(logBuf.String(), v1) {
				t.Fatalf("log leaks the value: %s", logBuf.String())
			}
			// Recovery: a successful fetch clears the alert.
			ff.setErr(nil)
			clk.Advance(time.Hour) // past any outage backoff
			v, info = mustGet(t, c, "svc/key", Selector{})
			if info.Stale || v == v1 {
				t.Fatalf("after recovery: %q %+v", v, info)
			}
			if s := c.Stats(); s.Alert || s.MaxStaleAge != 0 {
				t.Fatalf("stats after recovery = %+v", s)
			}
		})
	}
}

func TestCacheOutageBackoffServesStaleWithoutFetch(t *testing.T) {
	c, ff, clk := newTestCache(t, CacheOptions{TTL: time.Minute}) // RefreshAhead 12s, backoff 6s
	mustGet(t, c, "k", Selector{})
	ff.setErr(outageErrors()["503"])
	clk.Advance(2 * time.Minute)
	mustGet(t, c, "k", Selector{})
	before := ff.calls.Load()
	clk.Advance(time.Second)
	if _, info := mustGet(t, c, "k", Selector{}); !info.Stale {
		t.Fatalf("%+v", info)
	}
	if ff.calls.Load() != before {
		t.Fatal("fetched again within the outage backoff")
	}
	clk.Advance(10 * time.Second)
	mustGet(t, c, "k", Selector{})
	if ff.calls.Load() != before+1 {
		t.Fatal("did not retry after the outage backoff")
	}
}

func TestCacheOutageNothingCached(t *testing.T) {
	for name, outage := range outageErrors() {
		t.Run(name, func(t *testing.T) {
			c, ff, _ := newTestCache(t, CacheOptions{})
			ff.setErr(outage)
			s, info, err := c.Get(context.Background(), "never", Selector{})
			if !errors.Is(err, outage) || s != nil || info.Stale {
				t.Fatalf("Get = %v %+v %v, want %v", s, info, err, outage)
			}
		})
	}
}

func TestCacheRejectionIsErrorNotStale(t *testing.T) {
	for _, status := range []int{403, 404} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			c, ff, clk := newTestCache(t, CacheOptions{TTL: time.Minute})
			mustGet(t, c, "k", Selector{})
			ff.setErr(&APIError{Status: status, Code: "denied", Message: "no"})
			clk.Advance(2 * time.Minute)
			_, info, err := c.Get(context.Background(), "k", Selector{})
			if ae, ok := errors.AsType[*APIError](err); !ok || ae.Status != status || info.Stale {
				t.Fatalf("Get = %+v %v, want HTTP %d", info, err, status)
			}
			// The revoked value is not served later during an outage either.
			ff.setErr(outageErrors()["503"])
			if _, info, err := c.Get(context.Background(), "k", Selector{}); err == nil || info.Stale {
				t.Fatalf("after %d then outage: %+v %v, want error", status, info, err)
			}
		})
	}
}

func TestCacheInvalidate(t *testing.T) {
	c, ff, _ := newTestCache(t, CacheOptions{TTL: time.Hour})
	mustGet(t, c, "p", Selector{})
	mustGet(t, c, "p", Selector{Version: 2})
	mustGet(t, c, "other", Selector{})
	c.Invalidate("p")
	if v, info := mustGet(t, c, "p", Selector{}); info.Hit || v != "p@0#4" {
		t.Fatalf("after Invalidate: %q %+v", v, info)
	}
	if _, info := mustGet(t, c, "p", Selector{Version: 2}); info.Hit {
		t.Fatal("other selector of p not invalidated")
	}
	if _, info := mustGet(t, c, "other", Selector{}); !info.Hit {
		t.Fatal("other path invalidated")
	}
	if n := ff.calls.Load(); n != 5 {
		t.Fatalf("fetches = %d, want 5", n)
	}
}

func TestCacheInvalidateDuringFetch(t *testing.T) {
	c, ff, _ := newTestCache(t, CacheOptions{TTL: time.Hour})
	gate := make(chan struct{})
	ff.gate = gate
	first := make(chan string, 1)
	go func() {
		s, _, _ := c.Get(context.Background(), "p", Selector{})
		first <- string(s.Value)
	}()
	for ff.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	c.Invalidate("p")
	close(gate)
	if v := <-first; v != "p@0#1" {
		t.Fatalf("first = %q", v)
	}
	// The answer fetched before the invalidation was not stored.
	if v, info := mustGet(t, c, "p", Selector{}); info.Hit || v != "p@0#2" {
		t.Fatalf("after: %q %+v", v, info)
	}
}

func TestCacheWithRefresh(t *testing.T) {
	c, ff, _ := newTestCache(t, CacheOptions{TTL: time.Hour})
	var seen []string
	err := c.WithRefresh(context.Background(), "db", Selector{}, func(s *Secret) error {
		seen = append(seen, string(s.Value))
		if len(seen) == 1 {
			return fmt.Errorf("login: %w", ErrAuthFailed)
		}
		return nil
	})
	if err != nil || len(seen) != 2 || seen[0] != "db@0#1" || seen[1] != "db@0#2" {
		t.Fatalf("err %v, seen %q", err, seen)
	}
	// Retried once only.
	calls := 0
	err = c.WithRefresh(context.Background(), "db", Selector{}, func(*Secret) error {
		calls++
		return ErrAuthFailed
	})
	if !errors.Is(err, ErrAuthFailed) || calls != 2 {
		t.Fatalf("err %v, calls %d, want ErrAuthFailed after 2", err, calls)
	}
	// Other errors are not retried and do not refetch.
	before := ff.calls.Load()
	other := errors.New("timeout talking to db")
	calls = 0
	err = c.WithRefresh(context.Background(), "db", Selector{}, func(*Secret) error {
		calls++
		return other
	})
	if !errors.Is(err, other) || calls != 1 || ff.calls.Load() != before {
		t.Fatalf("err %v, calls %d, fetches %d->%d", err, calls, before, ff.calls.Load())
	}
}

func TestCacheWithRefreshDuringOutageKeepsFallback(t *testing.T) {
	c, ff, _ := newTestCache(t, CacheOptions{TTL: time.Hour})
	mustGet(t, c, "db", Selector{})
	ff.setErr(outageErrors()["network"])
	calls := 0
	err := c.WithRefresh(context.Background(), "db", Selector{}, func(*Secret) error {
		calls++
		return ErrAuthFailed
	})
	if !errors.Is(err, ErrAuthFailed) || calls != 1 {
		t.Fatalf("err %v, calls %d", err, calls)
	}
	if _, info := mustGet(t, c, "db", Selector{}); !info.Stale {
		t.Fatalf("fallback lost: %+v", info)
	}
}

func TestCacheRefreshAhead(t *testing.T) {
	c, ff, clk := newTestCache(t, CacheOptions{TTL: time.Second, RefreshAhead: 200 * time.Millisecond})
	mustGet(t, c, "used", Selector{})
	clk.Advance(950 * time.Millisecond) // within RefreshAhead of any jittered expiry (0.9s-1.1s)
	deadline := time.Now().Add(10 * time.Second)
	for c.Stats().Refreshes == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no refresh ahead")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := ff.calls.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2", n)
	}
	if v, info := mustGet(t, c, "used", Selector{}); !info.Hit || v != "used@0#2" {
		t.Fatalf("after refresh: %q %+v, want hit on the refreshed value", v, info)
	}
}

func TestCacheRefreshAheadSkipsUnused(t *testing.T) {
	c, ff, clk := newTestCacheLoop(t, CacheOptions{TTL: time.Second, RefreshAhead: 200 * time.Millisecond}, false)
	mustGet(t, c, "idle", Selector{})
	clk.Advance(3 * time.Second) // expired, last read 3s (> TTL) ago
	c.refreshDue()
	if n := ff.calls.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1: an unused entry was refreshed", n)
	}
	mustGet(t, c, "idle", Selector{}) // read again: refetch
	clk.Advance(950 * time.Millisecond)
	c.refreshDue()
	if n := ff.calls.Load(); n != 3 || c.Stats().Refreshes != 1 {
		t.Fatalf("fetches = %d, stats %+v", n, c.Stats())
	}
}

func TestCacheCollector(t *testing.T) {
	c, ff, clk := newTestCache(t, CacheOptions{TTL: time.Minute, StaleAlert: time.Minute})
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c.Collector()); err != nil {
		t.Fatal(err)
	}
	mustGet(t, c, "k", Selector{})
	mustGet(t, c, "k", Selector{})
	ff.setErr(outageErrors()["503"])
	clk.Advance(5 * time.Minute)
	mustGet(t, c, "k", Selector{})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if len(mf.GetMetric()) != 1 {
			t.Fatalf("%s has %d series", mf.GetName(), len(mf.GetMetric()))
		}
		m := mf.GetMetric()[0]
		if m.GetCounter() != nil {
			got[mf.GetName()] = m.GetCounter().GetValue()
		} else {
			got[mf.GetName()] = m.GetGauge().GetValue()
		}
	}
	want := map[string]float64{
		"keyward_client_cache_hits_total":         1,
		"keyward_client_cache_misses_total":       2,
		"keyward_client_cache_refreshes_total":    0,
		"keyward_client_cache_stale_serves_total": 1,
		"keyward_client_cache_stale_age_seconds":  300,
		"keyward_client_cache_stale_alert":        1,
	}
	if len(got) != len(want) {
		t.Fatalf("metrics = %v, want %v", got, want)
	}
	for name, v := range want {
		if g, ok := got[name]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", name, g, ok, v)
		}
	}
}

func TestCacheHitDoesNotAllocate(t *testing.T) {
	c, _, _ := newTestCache(t, CacheOptions{TTL: time.Hour})
	mustGet(t, c, "hot/path", Selector{State: "CURRENT"})
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		_, _, _ = c.Get(ctx, "hot/path", Selector{State: "CURRENT"})
	})
	if allocs != 0 {
		t.Fatalf("%v allocs per hit", allocs)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestCacheOutageJoinersDoNotWait: once a value was served stale, callers that find a retry
// in progress get the stale value at once instead of waiting for the retry to give up.
func TestCacheOutageJoinersDoNotWait(t *testing.T) {
	c, ff, clk := newTestCacheLoop(t, CacheOptions{TTL: time.Minute}, false)
	v1, _ := mustGet(t, c, "k", Selector{})
	ff.setErr(outageErrors()["deadline"])
	clk.Advance(2 * time.Minute)
	if _, info := mustGet(t, c, "k", Selector{}); !info.Stale {
		t.Fatalf("%+v", info)
	}
	clk.Advance(time.Minute) // past the outage backoff: the next caller retries
	gate := make(chan struct{})
	ff.mu.Lock()
	ff.gate = gate
	ff.mu.Unlock()
	before := ff.calls.Load()
	retried := make(chan error, 1)
	go func() {
		_, _, err := c.Get(context.Background(), "k", Selector{})
		retried <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for ff.calls.Load() == before {
		if time.Now().After(deadline) {
			t.Fatal("the retry never started")
		}
		time.Sleep(time.Millisecond)
	}
	v, info := mustGet(t, c, "k", Selector{})
	if v != v1 || !info.Stale {
		t.Fatalf("joiner during a retry: %q %+v", v, info)
	}
	close(gate)
	if err := <-retried; err != nil {
		t.Fatalf("the retrying caller: %v", err)
	}
}
