package main

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// benchReport is the result of a timed run, as printed by -o json.
type benchReport struct {
	Mode        string          `json:"mode"` // "run"
	Nodes       []string        `json:"nodes"`
	Concurrency int             `json:"concurrency"`
	DurationS   float64         `json:"duration_s"`
	WarmupS     float64         `json:"warmup_s"`
	ElapsedS    float64         `json:"elapsed_s"` // measured time, until the last worker stopped
	Keys        int             `json:"keys"`
	ValueSize   int             `json:"value_size"`
	Prefix      string          `json:"prefix"`
	Mix         benchMix        `json:"mix"`
	Ops         []benchOpReport `json:"ops"`
	Total       benchOpReport   `json:"total"`
	Interrupted bool            `json:"interrupted,omitempty"`
}

// benchOpReport summarises one kind of operation (or all of them). Count, throughput and
// latencies are of the successful operations.
type benchOpReport struct {
	Op            string            `json:"op"`
	Count         uint64            `json:"count"`
	OpsPerSec     float64           `json:"ops_per_sec"`
	MeanMS        float64           `json:"mean_ms"`
	P50MS         float64           `json:"p50_ms"`
	P90MS         float64           `json:"p90_ms"`
	P99MS         float64           `json:"p99_ms"`
	MaxMS         float64           `json:"max_ms"`
	Errors        uint64            `json:"errors"`
	ErrorsByCode  map[string]uint64 `json:"errors_by_code,omitempty"`
	ErrorExamples map[string]string `json:"error_examples,omitempty"`
}

// newBenchOpReport summarises s over elapsed.
func newBenchOpReport(name string, s *benchOpStats, elapsed time.Duration) benchOpReport {
	h := &s.hist
	r := benchOpReport{Op: name, Count: h.count(), MeanMS: benchMS(h.mean()), P50MS: benchMS(h.quantile(0.50)),
		P90MS: benchMS(h.quantile(0.90)), P99MS: benchMS(h.quantile(0.99)), MaxMS: benchMS(h.max),
		Errors: s.errorCount(), ErrorsByCode: s.errors, ErrorExamples: s.examples}
	if elapsed > 0 {
		r.OpsPerSec = benchRound(float64(r.Count)/elapsed.Seconds(), 1)
	}
	return r
}

// benchMS returns d in milliseconds, rounded to the microsecond.
func benchMS(d time.Duration) float64 {
	return benchRound(float64(d)/float64(time.Millisecond), 3)
}

// benchRound rounds v to the given number of decimals.
func benchRound(v float64, decimals int) float64 {
	p := math.Pow10(decimals)
	return math.Round(v*p) / p
}

// benchFmtMS formats a latency in milliseconds with three significant digits or so.
func benchFmtMS(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v < 1:
		return fmt.Sprintf("%.0fµs", v*1000)
	case v < 10:
		return fmt.Sprintf("%.2fms", v)
	case v < 100:
		return fmt.Sprintf("%.1fms", v)
	case v < 1000:
		return fmt.Sprintf("%.0fms", v)
	}
	return fmt.Sprintf("%.2fs", v/1000)
}

// benchPlural returns "n thing" or "n things".
func benchPlural(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

// benchFmtBytes formats n bytes in MiB, or in bytes when small.
func benchFmtBytes(n uint64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// benchOpRows returns the table rows of ops.
func benchOpRows(ops ...benchOpReport) [][]any {
	rows := make([][]any, 0, len(ops))
	for _, o := range ops {
		rows = append(rows, []any{o.Op, o.Count, fmt.Sprintf("%.1f", o.OpsPerSec), benchFmtMS(o.MeanMS),
			benchFmtMS(o.P50MS), benchFmtMS(o.P90MS), benchFmtMS(o.P99MS), benchFmtMS(o.MaxMS), o.Errors})
	}
	return rows
}

const benchOpHeader = "OP\tCOUNT\tOPS/S\tMEAN\tP50\tP90\tP99\tMAX\tERRORS"

// printBenchErrors prints one line per op and error code with its count and first message.
func printBenchErrors(w io.Writer, ops ...benchOpReport) error {
	var rows [][]any
	for _, o := range ops {
		for _, c := range benchSortedCodes(o.ErrorsByCode) {
			rows = append(rows, []any{"  " + o.Op, c, o.ErrorsByCode[c], "e.g. " + o.ErrorExamples[c]})
		}
	}
	if len(rows) == 0 {
		return nil
	}
	if err := say(w, "\n"); err != nil {
		return err
	}
	return table(w, "ERRORS\tCODE\tCOUNT\tFIRST", rows)
}

// printBenchReport prints rep as text or JSON.
func (x cli) printBenchReport(cfg benchConfig, rep *benchReport) error {
	if cfg.json {
		return printJSON(x.stdout, rep)
	}
	w := x.stdout
	var mix []string
	for op := range numBenchOps {
		if p := cfg.mix.percent(op); p > 0 {
			mix = append(mix, fmt.Sprintf("%d%% %s", p, strings.ReplaceAll(op.String(), "_", " ")+"s"))
		}
	}
	err := say(w, "keyward bench: %s (%s), %d workers, %d keys of %d B under %q\n"+
		"mix: %s; measured %.1fs after %v warmup\n\n",
		benchPlural(len(rep.Nodes), "node"), strings.Join(rep.Nodes, ", "), rep.Concurrency, rep.Keys, rep.ValueSize,
		rep.Prefix, strings.Join(mix, ", "), rep.ElapsedS, cfg.warmup)
	if err != nil {
		return err
	}
	if err := table(w, benchOpHeader, benchOpRows(append(rep.Ops, rep.Total)...)); err != nil {
		return err
	}
	if err := printBenchErrors(w, rep.Ops...); err != nil {
		return err
	}
	if rep.Interrupted {
		return say(w, "\n(interrupted: the run was cut short)\n")
	}
	return nil
}
