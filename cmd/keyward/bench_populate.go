package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Memory budget of a node holding populated secrets: 2 × stored ciphertext + 64 MiB, where
// each secret stores about value-size + popOverheadBytes bytes of ciphertext.
const (
	popOverheadBytes = 29 // format byte, nonce and tag
	popBaseBudget    = 64 << 20
	benchRSSMetric   = "process_resident_memory_bytes"
)

// benchPopulateReport is the result of --populate, as printed by -o json.
type benchPopulateReport struct {
	Mode                  string         `json:"mode"` // "populate"
	Nodes                 []string       `json:"nodes"`
	Concurrency           int            `json:"concurrency"`
	Secrets               int            `json:"secrets"` // requested
	ValueSize             int            `json:"value_size"`
	Prefix                string         `json:"prefix"` // of the populated paths
	ElapsedS              float64        `json:"elapsed_s"`
	Write                 benchOpReport  `json:"write"` // Count: acknowledged writes
	StoredCiphertextBytes uint64         `json:"stored_ciphertext_bytes"`
	RSSBudgetBytes        uint64         `json:"rss_budget_bytes"`
	RSS                   []benchNodeRSS `json:"rss"`
	Interrupted           bool           `json:"interrupted,omitempty"`
}

// benchNodeRSS is the resident memory of one node, or why it is unknown.
type benchNodeRSS struct {
	Node         string `json:"node"`
	RSSBytes     uint64 `json:"rss_bytes,omitempty"`
	WithinBudget *bool  `json:"within_budget,omitempty"`
	Error        string `json:"error,omitempty"`
}

// benchPopulate is `keyward bench --populate N`.
func (x cli) benchPopulate(ctx context.Context, cfg benchConfig, nodes []benchNode) int {
	prefix := cfg.prefix + "pop/"
	if !cfg.json {
		fmt.Fprintf(x.stderr, "bench: writing %d secrets under %s...\n", cfg.populate, prefix)
	}
	res := benchWriteAll(ctx, nodes, min(cfg.concurrency, cfg.populate), cfg.populate,
		func(i int) string { return benchKey(prefix, i) }, cfg.valueSize, 1)

	stored := uint64(res.written) * uint64(cfg.valueSize+popOverheadBytes)
	budget := 2*stored + popBaseBudget
	rep := benchPopulateReport{Mode: "populate", Nodes: cfg.addrs, Concurrency: cfg.concurrency,
		Secrets: cfg.populate, ValueSize: cfg.valueSize, Prefix: prefix, ElapsedS: benchRound(res.elapsed.Seconds(), 3),
		Write: newBenchOpReport("write", &res.stats, res.elapsed), StoredCiphertextBytes: stored,
		RSSBudgetBytes: budget, RSS: []benchNodeRSS{}, Interrupted: ctx.Err() != nil}
	for _, n := range nodes {
		r := benchNodeRSS{Node: n.addr}
		switch rss, err := benchReadRSS(ctx, n); {
		case err != nil:
			r.Error = err.Error()
		default:
			withinRel := rss <= budget
			r.RSSBytes, r.WithinBudget = rss, &withinRel
		}
		rep.RSS = append(rep.RSS, r)
	}

	if err := x.printPopulateReport(cfg, &rep); err != nil {
		fmt.Fprintf(x.stderr, "error: %v\n", err)
		return 1
	}
	switch {
	case rep.Interrupted:
		fmt.Fprintln(x.stderr, "error: interrupted")
		return 1
	case rep.Write.Count == 0:
		fmt.Fprintf(x.stderr, "error: no write succeeded%s\n", benchFirstErrors(&res.stats))
		return 1
	}
	return 0
}

// benchReadRSS asks node for its metrics and returns its resident memory in bytes.
func benchReadRSS(ctx context.Context, n benchNode) (uint64, error) {
	if ctx.Err() != nil {
		return 0, fmt.Errorf("metrics unavailable: %w", ctx.Err())
	}
	body, err := n.c.Metrics(ctx)
	if err != nil {
		return 0, fmt.Errorf("metrics unavailable: %w", err)
	}
	rss, err := parseBenchMetric(body, benchRSSMetric)
	if err != nil {
		return 0, fmt.Errorf("metrics unavailable: %w", err)
	}
	return uint64(rss), nil
}

// errBenchNoMetric: the exposition has no sample of the metric.
var errBenchNoMetric = errors.New("no such metric")

// parseBenchMetric returns the value of the first sample of the metric name in a Prometheus text
// exposition: a line "name value [timestamp]" or "name{labels} value [timestamp]".
func parseBenchMetric(exposition []byte, name string) (float64, error) {
	sc := bufio.NewScanner(bytes.NewReader(exposition))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '\t' && rest[0] != '{') {
			continue // a comment, another metric or one whose name only starts with name
		}
		if rest[0] == '{' {
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				return 0, fmt.Errorf("%s: malformed sample %q", name, line)
			}
			rest = rest[end+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return 0, fmt.Errorf("%s: sample without a value", name)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil || v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return 0, fmt.Errorf("%s: bad value %q", name, fields[0])
		}
		return v, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read metrics: %w", err)
	}
	return 0, fmt.Errorf("%s: %w", name, errBenchNoMetric)
}

// printPopulateReport prints rep as text or JSON.
func (x cli) printPopulateReport(cfg benchConfig, rep *benchPopulateReport) error {
	if cfg.json {
		return printJSON(x.stdout, rep)
	}
	w := x.stdout
	err := say(w, "keyward bench --populate: %d of %d secrets of %d B written under %q by %d workers on %s in %.1fs\n\n",
		rep.Write.Count, rep.Secrets, rep.ValueSize, rep.Prefix, rep.Concurrency, benchPlural(len(rep.Nodes), "node"), rep.ElapsedS)
	if err != nil {
		return err
	}
	if err := table(w, benchOpHeader, benchOpRows(rep.Write)); err != nil {
		return err
	}
	if err := printBenchErrors(w, rep.Write); err != nil {
		return err
	}
	err = say(w, "\nstored ciphertext ≈ %d × (%d + %d) B = %s; RSS budget per node = 2 × %s + 64 MiB = %s\n\n",
		rep.Write.Count, rep.ValueSize, popOverheadBytes, benchFmtBytes(rep.StoredCiphertextBytes),
		benchFmtBytes(rep.StoredCiphertextBytes), benchFmtBytes(rep.RSSBudgetBytes))
	if err != nil {
		return err
	}
	rows := make([][]any, 0, len(rep.RSS))
	for _, r := range rep.RSS {
		switch {
		case r.Error != "":
			rows = append(rows, []any{r.Node, "-", benchFmtBytes(rep.RSSBudgetBytes), r.Error})
		case *r.WithinBudget:
			rows = append(rows, []any{r.Node, benchFmtBytes(r.RSSBytes), benchFmtBytes(rep.RSSBudgetBytes), "yes"})
		default:
			rows = append(rows, []any{r.Node, benchFmtBytes(r.RSSBytes), benchFmtBytes(rep.RSSBudgetBytes), "NO: over budget"})
		}
	}
	if err := table(w, "NODE\tRSS\tBUDGET\tWITHIN BUDGET", rows); err != nil {
		return err
	}
	if rep.Interrupted {
		return say(w, "\n(interrupted: fewer secrets than asked were written)\n")
	}
	return nil
}
