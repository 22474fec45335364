package jepsen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/keyward/keyward/api/client"
)

// Config is one run of the suite.
type Config struct {
	Binary   string        // the keyward binary to test
	Dir      string        // the run directory (created)
	Nodes    int           // 3 or 5
	Duration time.Duration // how long workloads and nemeses run (at most, with Rounds)
	// Rounds, when positive, ends the run once every nemesis ran that many times (and a
	// quiet period followed the last fault), or at Duration, whichever comes first.
	Rounds    int
	Workloads []string      // AllWorkloads by default
	Nemeses   []string      // AllNemeses by default; empty slice: none
	Network   string        // "netns", "proxy" or "" (netns when possible, else proxy)
	Keys      int           // hot register keys
	KeyEpoch  time.Duration // how long the workloads use one generation of keys
	Workers   int           // clients per workload
	Think     time.Duration // pause between a client's operations (randomized up to 2x)
	Quiet     time.Duration // time between faults
	Fault     time.Duration // how long each fault lasts
	MaxStale  time.Duration // max_stale of stale reads
	// StaleAllowance is added to max_stale when checking stale reads (0: none; a node's
	// state may be max_stale old, so every write acknowledged before the read began minus
	// max_stale must be visible).
	StaleAllowance time.Duration
	LinTimeout     time.Duration // porcupine's time budget
	// LenientStale reports stale-read bound violations as known issues instead of failing
	// the run (for keyward before fb6cf52, whose max_stale bounded the time since the last
	// heartbeat rather than the age of the data).
	LenientStale bool
	Seed         uint64
	Log          func(format string, args ...any)
}

func (c *Config) defaults() error {
	if c.Nodes == 0 {
		c.Nodes = 3
	}
	if c.Nodes < 3 {
		return fmt.Errorf("jepsen: at least 3 nodes")
	}
	if c.Workloads == nil {
		c.Workloads = AllWorkloads
	}
	if c.Nemeses == nil {
		c.Nemeses = AllNemeses
	}
	for _, w := range c.Workloads {
		if !slices.Contains(AllWorkloads, w) {
			return fmt.Errorf("jepsen: unknown workload %q (have %s)", w, strings.Join(AllWorkloads, ","))
		}
	}
	for _, n := range c.Nemeses {
		if n == NClock {
			return ErrClockNemesis
		}
		if !slices.Contains(AllNemeses, n) {
			return fmt.Errorf("jepsen: unknown nemesis %q (have %s)", n, strings.Join(AllNemeses, ","))
		}
	}
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	set(&c.Duration, 60*time.Second)
	set(&c.Think, 20*time.Millisecond)
	set(&c.Quiet, 8*time.Second)
	set(&c.Fault, 10*time.Second)
	set(&c.MaxStale, 2*time.Second)
	set(&c.LinTimeout, 3*time.Minute)
	set(&c.KeyEpoch, 5*time.Minute)
	if c.Keys == 0 {
		c.Keys = 3
	}
	if c.Workers == 0 {
		c.Workers = c.Nodes
	}
	if c.Seed == 0 {
		c.Seed = uint64(time.Now().UnixNano())
	}
	if c.Log == nil {
		c.Log = func(string, ...any) {}
	}
	return nil
}

// Summary is summary.json of a run directory.
type Summary struct {
	Valid     bool           `json:"valid"`
	Started   time.Time      `json:"started"`
	Duration  float64        `json:"duration_s"`
	Nodes     int            `json:"nodes"`
	Network   string         `json:"network"`
	Workloads []string       `json:"workloads"`
	Nemeses   []string       `json:"nemeses"`
	Seed      uint64         `json:"seed"`
	Ops       int            `json:"ops"`
	ByOutcome map[string]int `json:"ops_by_outcome"`
	ByF       map[string]int `json:"ops_by_workload_f"`
	Errors    []string       `json:"harness_errors,omitempty"`
	Report    *Report        `json:"checks"`
}

// ErrViolations is returned by Run when a checker found a violation.
var ErrViolations = errors.New("jepsen: violations found")

// Run sets up the hosts and the cluster, runs the workloads while the nemeses strike, heals
// everything, reads the final state, checks the history and writes the run directory. It
// returns ErrViolations (with the summary) when a checker failed.
func Run(ctx context.Context, cfg Config) (*Summary, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	for _, d := range []string{cfg.Dir, filepath.Join(cfg.Dir, "logs"), filepath.Join(cfg.Dir, "data")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	hlog, err := os.Create(filepath.Join(cfg.Dir, "harness.log"))
	if err != nil {
		return nil, err
	}
	defer hlog.Close()
	var logMu sync.Mutex
	userLog := cfg.Log
	logf := func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		logMu.Lock()
		fmt.Fprintf(hlog, "%s %s\n", time.Now().UTC().Format("15:04:05.000"), line)
		logMu.Unlock()
		userLog("%s", line)
	}

	var nw Network
	switch cfg.Network {
	case "netns":
		nw, err = NewNetns(cfg.Nodes)
	case "proxy":
		nw, err = NewProxyNet(cfg.Nodes)
	case "":
		if nw, err = NewNetns(cfg.Nodes); errors.Is(err, ErrNoNetns) {
			logf("network namespaces unavailable (%v): using loopback proxies", err)
			nw, err = NewProxyNet(cfg.Nodes)
		}
	default:
		err = fmt.Errorf("jepsen: unknown network %q", cfg.Network)
	}
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := nw.Close(); err != nil {
			logf("network cleanup: %v", err)
		}
	}()
	logf("network: %s; binary %s; seed %d", nw.Kind(), cfg.Binary, cfg.Seed)

	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	c, err := StartCluster(sctx, nw, cfg.Binary, cfg.Dir, cfg.Nodes)
	cancel()
	if err != nil {
		return nil, err
	}
	defer c.Stop()
	logf("cluster of %d up and initialized", cfg.Nodes)

	h, err := NewHistory(filepath.Join(cfg.Dir, "history.jsonl"))
	if err != nil {
		return nil, err
	}
	sum := &Summary{Started: h.Start(), Nodes: cfg.Nodes, Network: nw.Kind(), Workloads: cfg.Workloads,
		Nemeses: cfg.Nemeses, Seed: cfg.Seed, ByOutcome: map[string]int{}, ByF: map[string]int{}}

	if slices.Contains(cfg.Workloads, WRotation) {
		cl, err := c.Client(0)
		if err != nil {
			return nil, err
		}
		if err := setupRotation(ctx, cl, h); err != nil {
			return nil, err
		}
	}
	// Workers: cfg.Workers clients per workload, spread over the nodes.
	rctx, stopRun := context.WithTimeout(ctx, cfg.Duration)
	defer stopRun()
	var wg sync.WaitGroup
	id := 0
	for _, wl := range cfg.Workloads {
		step := map[string]func(context.Context, *worker){WRegister: registerStep, WVersions: versionsStep,
			WStale: staleStep, WAudit: auditStep, WRotation: rotationStep}[wl]
		for k := 0; k < cfg.Workers; k++ {
			node := id % cfg.Nodes
			cl, err := c.Client(node)
			if err != nil {
				return nil, err
			}
			w := &worker{id: id, node: node, cl: cl, h: h, cfg: &cfg, seen: map[string]uint64{}, step: step, auditGen: -1,
				rng: rand.New(rand.NewPCG(cfg.Seed, uint64(id)))}
			id++
			wg.Add(1)
			go func() { defer wg.Done(); runWorker(rctx, w) }()
		}
	}
	nm := &nemesis{c: c, nw: nw, cfg: &cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 1<<32))}
	if len(cfg.Nemeses) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nm.schedule(rctx, h, cfg.Nemeses, cfg.Rounds*len(cfg.Nemeses), logf)
			if cfg.Rounds > 0 {
				stopRun() // every fault ran: the run ends after its last quiet period
			}
		}()
	}
	wg.Wait()
	logf("workloads done: %d operations", h.Len())

	// Heal and read the final state.
	hctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := nm.healAll(hctx); err != nil {
		sum.Errors = append(sum.Errors, "heal: "+err.Error())
	}
	if err := rejoinAll(hctx, c); err != nil {
		sum.Errors = append(sum.Errors, err.Error())
	}
	// Rotations first: once their policies are gone no new version appears, so the listing
	// read next is final.
	var rotations map[string][]RotationRecord
	if slices.Contains(cfg.Workloads, WRotation) {
		l, _ := c.WaitHealthy(hctx)
		if cl, err := c.Client(max(l, 0)); err == nil {
			if rotations, err = readRotations(hctx, cl); err != nil {
				sum.Errors = append(sum.Errors, "rotations: "+err.Error())
			}
		}
	}
	ops := h.Ops()
	fin, err := readFinal(hctx, c, ops)
	fin.Rotations = rotations
	if err != nil {
		sum.Errors = append(sum.Errors, "final read: "+err.Error())
	} else {
		fin.OK = true
	}
	auditOn := slices.Contains(cfg.Workloads, WAudit)
	var audited map[string]bool
	if auditOn {
		audited, err = waitAudit(hctx, c, h.Start(), ops)
		if err != nil {
			sum.Errors = append(sum.Errors, "audit: "+err.Error())
			audited = nil
		}
	}
	evs := h.Events()
	if err := h.Close(); err != nil {
		sum.Errors = append(sum.Errors, "history: "+err.Error())
	}
	logf("checking %d operations", len(ops))
	vis, err := os.Create(filepath.Join(cfg.Dir, "linearizability.html"))
	if err != nil {
		return nil, err
	}
	rep := Check(ops, evs, fin, audited, auditOn, CheckOptions{LinTimeout: cfg.LinTimeout,
		StaleAllowance: cfg.StaleAllowance, LenientStale: cfg.LenientStale}, vis)
	vis.Close()
	sum.Report = rep
	sum.Duration = time.Since(h.Start()).Seconds()
	sum.Ops = len(ops)
	for _, o := range ops {
		sum.ByOutcome[o.Type]++
		sum.ByF[o.Workload+"/"+o.F+"/"+o.Type]++
	}
	sum.Valid = rep.Valid && len(sum.Errors) == 0
	b, _ := json.MarshalIndent(sum, "", "  ")
	if err := os.WriteFile(filepath.Join(cfg.Dir, "summary.json"), b, 0o644); err != nil {
		return sum, err
	}
	logf("%s", rep.Summary())
	if !sum.Valid {
		if len(sum.Errors) > 0 && rep.Valid {
			return sum, fmt.Errorf("jepsen: harness errors: %s", strings.Join(sum.Errors, "; "))
		}
		return sum, ErrViolations
	}
	return sum, nil
}

// rejoinAll makes sure every node is a member again (a membership fault may have been cut
// short by the end of the run) and that all of them agree on the leader.
func rejoinAll(ctx context.Context, c *Cluster) error {
	for {
		if l := c.Leader(ctx); l >= 0 {
			cl, err := c.Client(l)
			if err != nil {
				return err
			}
			peers, err := cl.Peers(ctx)
			if err == nil && len(peers) == len(c.Nodes) {
				_, err := c.WaitHealthy(ctx)
				return err
			}
			in := map[string]bool{}
			for _, p := range peers {
				in[p.ID] = true
			}
			for i, n := range c.Nodes {
				if !in[n.ID] && err == nil {
					if vc, cerr := c.Client(i); cerr == nil {
						_ = vc.JoinCluster(ctx, c.Nodes[l].Addrs.RaftAdvertise)
					}
				}
			}
		}
		if !sleepCtx(ctx, time.Second) {
			return fmt.Errorf("jepsen: not every node rejoined: %w", ctx.Err())
		}
	}
}

// readFinal lists every written key's versions and reads the values of retained versions,
// retrying each call until it succeeds (the cluster is healed).
func readFinal(ctx context.Context, c *Cluster, ops []Op) (Final, error) {
	fin := Final{Versions: map[string][]VersionInfo{}, Current: map[string]uint64{}, Values: map[string]map[uint64]string{}}
	keys := map[string]bool{}
	for _, o := range ops {
		if isWrite(o) {
			keys[o.Key] = true
		}
	}
	var sorted []string
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	l, err := c.WaitHealthy(ctx)
	if err != nil {
		return fin, err
	}
	cl, err := c.Client(l)
	if err != nil {
		return fin, err
	}
	retry := func(f func() error) error {
		for {
			err := f()
			if err == nil || client.IsCode(err, "not_found") {
				return err
			}
			if !sleepCtx(ctx, 200*time.Millisecond) {
				return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
			}
		}
	}
	for _, k := range sorted {
		err := retry(func() error {
			vs, err := cl.Versions(ctx, k)
			if err != nil {
				return err
			}
			list := versionInfos(vs)
			sort.Slice(list, func(i, j int) bool { return list[i].Version < list[j].Version })
			fin.Versions[k], fin.Current[k] = list, vs.CurrentVersion
			return nil
		})
		if client.IsCode(err, "not_found") {
			continue
		}
		if err != nil {
			return fin, fmt.Errorf("versions of %s: %w", k, err)
		}
		fin.Values[k] = map[uint64]string{}
		for _, v := range fin.Versions[k] {
			if v.Destroyed {
				continue
			}
			err := retry(func() error {
				s, err := cl.Get(ctx, k, client.Selector{Version: v.Version})
				if err == nil {
					fin.Values[k][v.Version] = string(s.Value)
				}
				return err
			})
			if err != nil && !client.IsCode(err, "not_found") && !client.IsCode(err, "version_destroyed") {
				return fin, fmt.Errorf("read %s v%d: %w", k, v.Version, err)
			}
		}
	}
	return fin, nil
}

// waitAudit polls the committed audit log until it holds a record for every acknowledged
// operation of the history, or a minute passes, and returns the request ids it holds.
func waitAudit(ctx context.Context, c *Cluster, since time.Time, ops []Op) (map[string]bool, error) {
	want := 0
	for _, o := range ops {
		if o.Type == OK && o.RequestID != "" {
			want++
		}
	}
	seen := map[string]bool{}
	deadline := time.Now().Add(time.Minute)
	var after uint64 // records are listed in commit order: each pass goes on from the last
	var listErr error
	for {
		l, err := c.WaitHealthy(ctx)
		if err != nil {
			return seen, err
		}
		cl, err := c.Client(l)
		if err != nil {
			return seen, err
		}
		for {
			recs, next, err := cl.AuditList(ctx, client.AuditQuery{From: since.Add(-time.Minute), After: after, Limit: 1000})
			listErr = err
			if err != nil {
				break
			}
			for _, r := range recs {
				if r.RequestID != "" {
					seen[r.RequestID] = true
				}
			}
			if next == 0 {
				break
			}
			after = next
		}
		n := 0
		for _, o := range ops {
			if o.Type == OK && o.RequestID != "" && seen[o.RequestID] {
				n++
			}
		}
		if n == want {
			return seen, nil
		}
		if time.Now().After(deadline) {
			if listErr != nil {
				return seen, fmt.Errorf("list audit records: %w", listErr)
			}
			return seen, nil
		}
		if !sleepCtx(ctx, time.Second) {
			return seen, ctx.Err()
		}
	}
}
