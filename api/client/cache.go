package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrAuthFailed is the sentinel a caller of WithRefresh wraps when the target of a secret
// (a database, an API...) rejects the credentials, so the cache refetches them once.
var ErrAuthFailed = errors.New("credentials rejected by the target")

// errNoSecret: the fetch function returned neither a secret nor an error.
var errNoSecret = errors.New("cache: fetch returned no secret and no error")

// Defaults of CacheOptions.
const (
	DefaultCacheTTL        = 60 * time.Second
	DefaultCacheStaleAlert = 10 * time.Minute
)

// refreshConcurrency bounds the background refreshes running at once.
const refreshConcurrency = 8

// CacheOptions configures a Cache.
type CacheOptions struct {
	// TTL is how long a fetched value is served without asking the cluster; each entry's TTL
	// gets ±10% jitter so entries fetched together do not expire together. Default 60s.
	TTL time.Duration
	// RefreshAhead: entries read within the last TTL are refreshed in the background this long
	// before they expire. Default TTL/5; values of TTL or more are taken as TTL/2.
	RefreshAhead time.Duration
	// StaleAlert: Stats().Alert is true when the cache serves values older than this because
	// the cluster is unavailable; crossing it is logged once at warn per entry. Default 10m.
	StaleAlert time.Duration
	// Now is the clock; default time.Now. Injectable for tests.
	Now func() time.Time
	// Log receives the cache's warnings; default slog.Default(). Values are never logged.
	Log *slog.Logger
}

// CacheInfo tells how a Cache.Get was answered.
type CacheInfo struct {
	// Hit: a fresh cached value, no fetch.
	Hit bool
	// Stale: the cluster was unavailable and an expired value was served.
	Stale bool
	// Age is how long ago the returned value was fetched (0 for a value just fetched).
	Age time.Duration
}

// CacheStats are the counters of a Cache.
type CacheStats struct {
	Hits, Misses, Refreshes, StaleServes uint64
	// MaxStaleAge is the age of the oldest value the cache is currently serving stale (entries
	// served stale, not fetched since and read within the last TTL); 0 when none.
	MaxStaleAge time.Duration
	// Alert: MaxStaleAge is over CacheOptions.StaleAlert.
	Alert bool
}

// cacheKey identifies a cached read; comparable, so map look-ups do not allocate.
type cacheKey struct {
	path string
	sel  Selector
}

// cacheEntry is one cached value. val, fetched and expires never change once the entry is in
// the map (a refresh stores a new entry); the atomics are the entry's mutable state.
type cacheEntry struct {
	val     *Secret
	fetched time.Time
	expires time.Time

	lastUsed    atomic.Int64 // ns since Cache.epoch of the last Get
	retryAt     atomic.Int64 // ns since Cache.epoch before which an outage is not retried
	servedStale atomic.Bool  // served stale since it was fetched
	alerted     atomic.Bool  // the StaleAlert crossing was logged
}

// flight is one fetch in progress; waiters block on done.
type flight struct {
	done     chan struct{}
	val      *Secret
	err      error
	detached bool // Invalidate ran during the fetch: its result is not stored (guarded by Cache.mu)
	// abandoned: the fetch failed because the leader's own context ended; waiters retry.
	abandoned bool
}

// Cache is a client-side cache of secret reads that keeps serving the last known values when
// the cluster is unavailable. It is safe for concurrent use. The *Secret values it returns
// are shared between callers and must not be modified.
type Cache struct {
	fetch        func(ctx context.Context, path string, sel Selector) (*Secret, error)
	ttl          time.Duration
	refreshAhead time.Duration
	staleAlert   time.Duration
	retryBackoff time.Duration
	now          func() time.Time
	log          *slog.Logger
	epoch        time.Time

	mu      sync.RWMutex
	entries map[cacheKey]*cacheEntry
	flights map[cacheKey]*flight

	hits, misses, refreshes, staleServes atomic.Uint64

	baseCtx   context.Context
	cancel    context.CancelFunc
	closeOnce sync.Once
	loopDone  chan struct{}
}

// NewCache returns a Cache that reads through fetch, normally (*Client).Get; the cache never
// touches the network otherwise. It starts the refresh-ahead goroutine; call Close to stop it.
func NewCache(fetch func(ctx context.Context, path string, sel Selector) (*Secret, error), o CacheOptions) *Cache {
	return newCache(fetch, o, true)
}

// newCache is NewCache; without refreshLoop no refresh-ahead goroutine runs (tests call
// refreshDue themselves).
func newCache(fetch func(ctx context.Context, path string, sel Selector) (*Secret, error), o CacheOptions, refreshLoop bool) *Cache {
	if o.TTL <= 0 {
		o.TTL = DefaultCacheTTL
	}
	if o.RefreshAhead <= 0 {
		o.RefreshAhead = o.TTL / 5
	}
	if o.RefreshAhead >= o.TTL {
		o.RefreshAhead = o.TTL / 2
	}
	if o.StaleAlert <= 0 {
		o.StaleAlert = DefaultCacheStaleAlert
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Cache{
		fetch:        fetch,
		ttl:          o.TTL,
		refreshAhead: o.RefreshAhead,
		staleAlert:   o.StaleAlert,
		retryBackoff: max(o.RefreshAhead/2, time.Millisecond),
		now:          o.Now,
		log:          o.Log,
		epoch:        o.Now(),
		entries:      make(map[cacheKey]*cacheEntry),
		flights:      make(map[cacheKey]*flight),
		baseCtx:      ctx,
		cancel:       cancel,
		loopDone:     make(chan struct{}),
	}
	if refreshLoop {
		go c.loop(min(max(o.RefreshAhead/4, 50*time.Millisecond), time.Second))
	} else {
		close(c.loopDone)
	}
	return c
}

// Close stops the refresh-ahead goroutine and cancels background fetches. Get keeps working.
func (c *Cache) Close() {
	c.closeOnce.Do(func() {
		c.cancel()
		<-c.loopDone
	})
}

// since returns t as ns since the epoch, the form of the entries' atomic times.
func (c *Cache) since(t time.Time) int64 { return int64(t.Sub(c.epoch)) }

// Get returns the value of (path, sel): the cached one while fresh, otherwise a fetched one.
// Concurrent misses of one key share one fetch. When the fetch fails because the cluster is
// unavailable (network error, deadline, 5xx, 429) and a value was ever cached, that value is
// returned however old, with Stale set; other errors, such as 403 or 404, are returned (and
// drop the cached value, so a revoked or deleted secret is not served later).
func (c *Cache) Get(ctx context.Context, path string, sel Selector) (*Secret, CacheInfo, error) {
	k := cacheKey{path: path, sel: sel}
	now := c.now()
	c.mu.RLock()
	e := c.entries[k]
	c.mu.RUnlock()
	if e != nil {
		// Store the use time only when it moved, so parallel hits do not fight over the line.
		if n := c.since(now); n-e.lastUsed.Load() > int64(time.Millisecond) {
			e.lastUsed.Store(n)
		}
		if now.Before(e.expires) {
			c.hits.Add(1)
			return e.val, CacheInfo{Hit: true, Age: now.Sub(e.fetched)}, nil
		}
		if c.since(now) < e.retryAt.Load() {
			// A fetch just failed with an outage: do not wait for another one yet.
			return c.serveStale(k, e, now)
		}
	}
	return c.load(ctx, k)
}

// load fetches k, or waits for the fetch in progress, and falls back to the stale value.
func (c *Cache) load(ctx context.Context, k cacheKey) (*Secret, CacheInfo, error) {
	for {
		now := c.now()
		c.mu.Lock()
		e := c.entries[k]
		if e != nil && now.Before(e.expires) {
			c.mu.Unlock() // filled while we were looking
			e.lastUsed.Store(c.since(now))
			c.hits.Add(1)
			return e.val, CacheInfo{Hit: true, Age: now.Sub(e.fetched)}, nil
		}
		f, joined := c.flights[k]
		if joined && e != nil && e.servedStale.Load() {
			// An outage is under way and another caller is already retrying (which may take
			// until its deadline during a partition): answer with the stale value now.
			c.mu.Unlock()
			return c.serveStale(k, e, now)
		}
		if !joined {
			f = &flight{done: make(chan struct{})}
			c.flights[k] = f
		}
		c.mu.Unlock()
		c.misses.Add(1)
		if joined {
			select {
			case <-f.done:
			case <-ctx.Done():
				return c.fallback(k, ctx.Err())
			}
			if f.abandoned && ctx.Err() == nil {
				continue // the leader gave up, not the cluster: fetch ourselves
			}
		} else {
			c.runFetch(ctx, k, f)
		}
		if f.err == nil {
			return f.val, CacheInfo{}, nil
		}
		return c.fallback(k, f.err)
	}
}

// runFetch performs the fetch of flight f, which the caller registered for k, stores its
// result and releases the waiters.
func (c *Cache) runFetch(ctx context.Context, k cacheKey, f *flight) {
	completed := false
	defer func() {
		if !completed { // fetch panicked: release the waiters, then let the panic go on
			f.err = errors.New("cache: fetch panicked")
			c.mu.Lock()
			if c.flights[k] == f {
				delete(c.flights, k)
			}
			c.mu.Unlock()
			close(f.done)
		}
	}()
	v, err := c.fetch(ctx, k.path, k.sel)
	if err == nil && v == nil {
		err = errNoSecret
	}
	now := c.now()
	c.mu.Lock()
	if c.flights[k] == f {
		delete(c.flights, k)
	}
	old := c.entries[k]
	switch {
	case f.detached:
		// Invalidated meanwhile: the answer may predate the invalidation; do not store it.
	case err == nil:
		ne := &cacheEntry{val: v, fetched: now, expires: now.Add(c.jitteredTTL())}
		ne.lastUsed.Store(c.since(now))
		if old != nil && old.lastUsed.Load() > ne.lastUsed.Load() {
			ne.lastUsed.Store(old.lastUsed.Load())
		}
		c.entries[k] = ne
	case isUnavailable(err):
		if old != nil {
			old.retryAt.Store(c.since(now.Add(c.retryBackoff)))
		}
	case isRejection(err):
		delete(c.entries, k)
	}
	c.mu.Unlock()
	f.val, f.err = v, err
	f.abandoned = err != nil && ctx.Err() != nil
	completed = true
	close(f.done)
}

// jitteredTTL returns the TTL ±10%.
func (c *Cache) jitteredTTL() time.Duration {
	return time.Duration(float64(c.ttl) * (0.9 + 0.2*rand.Float64()))
}

// fallback returns the cached value of k as stale when err says the cluster is unavailable,
// and err otherwise.
func (c *Cache) fallback(k cacheKey, err error) (*Secret, CacheInfo, error) {
	if isUnavailable(err) {
		c.mu.RLock()
		e := c.entries[k]
		c.mu.RUnlock()
		if e != nil {
			return c.serveStale(k, e, c.now())
		}
	}
	return nil, CacheInfo{}, err
}

// serveStale returns e's value as stale and keeps the stale statistics.
func (c *Cache) serveStale(k cacheKey, e *cacheEntry, now time.Time) (*Secret, CacheInfo, error) {
	c.staleServes.Add(1)
	e.servedStale.Store(true)
	age := now.Sub(e.fetched)
	if age > c.staleAlert && !e.alerted.Swap(true) {
		c.log.Warn("keyward cache: serving a stale secret, the cluster is unavailable",
			"path", k.path, "version", k.sel.Version, "state", k.sel.State,
			"age", age.Round(time.Second).String(), "stale_alert", c.staleAlert.String())
	}
	return e.val, CacheInfo{Stale: true, Age: age}, nil
}

// isUnavailable reports whether err means the cluster could not answer: a network error, a
// deadline, a 5xx or a 429. A cancelled context is the caller giving up, not an outage.
func isUnavailable(err error) bool {
	if ae, ok := errors.AsType[*APIError](err); ok {
		return ae.Status >= 500 || ae.Status == 429
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return true
	case errors.Is(err, context.Canceled):
		return false
	case errors.Is(err, io.ErrUnexpectedEOF):
		return true
	}
	_, ok := errors.AsType[net.Error](err)
	return ok
}

// isRejection reports whether err is a definitive 4xx answer (other than 429), after which the
// cached value must not be served any more.
func isRejection(err error) bool {
	ae, ok := errors.AsType[*APIError](err)
	return ok && ae.Status >= 400 && ae.Status <= 499 && ae.Status != 429
}

// Invalidate drops the cached values of path, all selectors; a fetch of path in progress is
// not stored, and the next Get fetches anew.
func (c *Cache) Invalidate(path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.entries {
		if k.path == path {
			delete(c.entries, k)
		}
	}
	c.detachFlightsLocked(path)
}

// detachFlightsLocked makes the fetches of path in progress unjoinable and unstored.
func (c *Cache) detachFlightsLocked(path string) {
	for k, f := range c.flights {
		if k.path == path {
			f.detached = true
			delete(c.flights, k)
		}
	}
}

// expire marks the cached values of path as expired, keeping them as a fallback for an
// outage, and detaches fetches in progress, so the next Get fetches anew.
func (c *Cache) expire(path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		if k.path != path {
			continue
		}
		ne := &cacheEntry{val: e.val, fetched: e.fetched} // zero expires: expired
		ne.lastUsed.Store(e.lastUsed.Load())
		ne.servedStale.Store(e.servedStale.Load())
		ne.alerted.Store(e.alerted.Load())
		c.entries[k] = ne
	}
	c.detachFlightsLocked(path)
}

// WithRefresh gets the value of (path, sel) and runs use with it. When use fails with an
// error wrapping ErrAuthFailed, the cached value is invalidated, refetched once and use is
// retried once with the new value. If the cluster is unavailable for that refetch, the old
// value stays cached as the outage fallback (use is not retried with the rejected value) and
// the error of use is returned with the refetch's.
func (c *Cache) WithRefresh(ctx context.Context, path string, sel Selector, use func(*Secret) error) error {
	s, _, err := c.Get(ctx, path, sel)
	if err != nil {
		return err
	}
	err = use(s)
	if !errors.Is(err, ErrAuthFailed) {
		return err
	}
	c.expire(path)
	s2, info, err2 := c.Get(ctx, path, sel)
	switch {
	case err2 != nil:
		return fmt.Errorf("%w; refetching %s: %w", err, path, err2)
	case info.Stale:
		return fmt.Errorf("%w; refetching %s: the cluster is unavailable", err, path)
	}
	return use(s2)
}

// loop refreshes ahead every tick until Close.
func (c *Cache) loop(tick time.Duration) {
	defer close(c.loopDone)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-c.baseCtx.Done():
			return
		case <-t.C:
			c.refreshDue()
		}
	}
}

// refreshDue refreshes the entries read within the last TTL that expire within RefreshAhead
// (or have expired), unless a fetch is in progress or an outage backoff runs.
func (c *Cache) refreshDue() {
	now := c.now()
	n := c.since(now)
	var due []cacheKey
	c.mu.RLock()
	for k, e := range c.entries {
		if n-e.lastUsed.Load() <= int64(c.ttl) && !now.Before(e.expires.Add(-c.refreshAhead)) &&
			n >= e.retryAt.Load() && c.flights[k] == nil {
			due = append(due, k)
		}
	}
	c.mu.RUnlock()
	sem := make(chan struct{}, refreshConcurrency)
	var wg sync.WaitGroup
	for _, k := range due {
		if c.baseCtx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c.refresh(k)
		})
	}
	wg.Wait()
}

// refresh fetches k in the background unless a fetch of k is in progress.
func (c *Cache) refresh(k cacheKey) {
	c.mu.Lock()
	if c.flights[k] != nil {
		c.mu.Unlock()
		return
	}
	f := &flight{done: make(chan struct{})}
	c.flights[k] = f
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(c.baseCtx, max(c.refreshAhead, 5*time.Second))
	defer cancel()
	c.runFetch(ctx, k, f)
	if f.err == nil && !f.detached {
		c.refreshes.Add(1)
	}
}

// Stats returns the counters and the stale state of the cache.
func (c *Cache) Stats() CacheStats {
	now := c.now()
	n := c.since(now)
	var maxAge time.Duration
	c.mu.RLock()
	for _, e := range c.entries {
		if e.servedStale.Load() && n-e.lastUsed.Load() <= int64(c.ttl) {
			maxAge = max(maxAge, now.Sub(e.fetched))
		}
	}
	c.mu.RUnlock()
	return CacheStats{
		Hits:        c.hits.Load(),
		Misses:      c.misses.Load(),
		Refreshes:   c.refreshes.Load(),
		StaleServes: c.staleServes.Load(),
		MaxStaleAge: maxAge,
		Alert:       maxAge > c.staleAlert,
	}
}

// Collector returns a prometheus.Collector exposing Stats.
func (c *Cache) Collector() prometheus.Collector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("keyward_client_cache_"+name, help, nil, nil)
	}
	return &cacheCollector{
		c:           c,
		hits:        d("hits_total", "Cache reads answered from a fresh cached value."),
		misses:      d("misses_total", "Cache reads that fetched or waited for a fetch."),
		refreshes:   d("refreshes_total", "Successful background refresh-ahead fetches."),
		staleServes: d("stale_serves_total", "Cache reads answered with a stale value because the cluster was unavailable."),
		staleAge:    d("stale_age_seconds", "Age of the oldest value currently served stale."),
		staleAlert:  d("stale_alert", "1 when a value older than the stale alert threshold is being served."),
	}
}

// cacheCollector is the prometheus.Collector of a Cache.
type cacheCollector struct {
	c                                                          *Cache
	hits, misses, refreshes, staleServes, staleAge, staleAlert *prometheus.Desc
}

// Describe implements prometheus.Collector.
func (cc *cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{cc.hits, cc.misses, cc.refreshes, cc.staleServes, cc.staleAge, cc.staleAlert} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (cc *cacheCollector) Collect(ch chan<- prometheus.Metric) {
	s := cc.c.Stats()
	alert := 0.0
	if s.Alert {
		alert = 1
	}
	ch <- prometheus.MustNewConstMetric(cc.hits, prometheus.CounterValue, float64(s.Hits))
	ch <- prometheus.MustNewConstMetric(cc.misses, prometheus.CounterValue, float64(s.Misses))
	ch <- prometheus.MustNewConstMetric(cc.refreshes, prometheus.CounterValue, float64(s.Refreshes))
	ch <- prometheus.MustNewConstMetric(cc.staleServes, prometheus.CounterValue, float64(s.StaleServes))
	ch <- prometheus.MustNewConstMetric(cc.staleAge, prometheus.GaugeValue, s.MaxStaleAge.Seconds())
	ch <- prometheus.MustNewConstMetric(cc.staleAlert, prometheus.GaugeValue, alert)
}
