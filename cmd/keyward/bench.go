package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/keyward/keyward/api/client"
	"github.com/keyward/keyward/api/wire"
)

// benchOpTimeout bounds each request of `keyward bench`; a slower one counts as a "timeout"
// error. It matches the top of the latency histogram.
const benchOpTimeout = 10 * time.Second

// benchConfig is a parsed `keyward bench` command line.
type benchConfig struct {
	addrs       []string
	caCert      string
	token       string
	concurrency int
	duration    time.Duration
	warmup      time.Duration
	valueSize   int
	keys        int
	mix         benchMix
	prefix      string
	populate    int // > 0: populate mode
	json        bool
}

// benchMix is the percentage of each operation in a timed run; they sum to 100.
type benchMix struct {
	Writes     int `json:"writes"`
	Reads      int `json:"reads"`
	StaleReads int `json:"stale_reads"`
}

// parseMix checks the --writes, --reads and --stale-reads percentages.
func parseMix(writes, reads, staleReads int) (benchMix, error) {
	m := benchMix{Writes: writes, Reads: reads, StaleReads: staleReads}
	for _, p := range []struct {
		name string
		v    int
	}{{"--writes", writes}, {"--reads", reads}, {"--stale-reads", staleReads}} {
		if p.v < 0 || p.v > 100 {
			return benchMix{}, fmt.Errorf("%s must be a percentage from 0 to 100, not %d", p.name, p.v)
		}
	}
	if sum := writes + reads + staleReads; sum != 100 {
		return benchMix{}, fmt.Errorf("--writes, --reads and --stale-reads must sum to 100, not %d", sum)
	}
	return m, nil
}

// pick returns the operation for r, a uniform random number in [0, 100).
func (m benchMix) pick(r int) benchOp {
	switch {
	case r < m.Writes:
		return opWrite
	case r < m.Writes+m.Reads:
		return opRead
	}
	return opStaleRead
}

// percent returns the share of op in the mix.
func (m benchMix) percent(op benchOp) int {
	return [numBenchOps]int{m.Writes, m.Reads, m.StaleReads}[op]
}

// benchOp is one kind of operation of the load.
type benchOp int

const (
	opWrite     benchOp = iota // PUT without CAS
	opRead                     // linearizable GET
	opStaleRead                // GET ?stale=true
	numBenchOps
)

func (o benchOp) String() string {
	return [numBenchOps]string{"write", "read", "stale_read"}[o]
}

// splitBenchAddrs splits a comma-separated address list, dropping blanks.
func splitBenchAddrs(s string) []string {
	var out []string
	for a := range strings.SplitSeq(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// bench is the `keyward bench` command.
func (x cli) bench(args []string) int {
	if len(args) > 0 && args[0] == "fsync" {
		return x.benchFsync(args[1:])
	}
	fs := flag.NewFlagSet("keyward bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	addr := fs.String("addr", "", "comma-separated server `URLs`; workers are spread over them (default $KEYWARD_ADDR or "+defaultAddr+")")
	caCert := fs.String("ca-cert", "", "PEM `file` of the CA that signed the servers' certificates, for https URLs (default $KEYWARD_CACERT, else the system roots)")
	token := fs.String("token", "", "API token (default $KEYWARD_TOKEN)")
	concurrency := fs.Int("concurrency", 64, "concurrent workers")
	duration := fs.Duration("duration", 30*time.Second, "measured run time, after the warmup")
	warmup := fs.Duration("warmup", 2*time.Second, "time the load runs before it is measured")
	valueSize := fs.Int("value-size", 1024, "bytes per written value (1 to 65536)")
	keys := fs.Int("keys", 1000, "number of distinct secrets the run reads and writes")
	writes := fs.Int("writes", 20, "percentage of writes (PUT without CAS)")
	reads := fs.Int("reads", 40, "percentage of linearizable reads")
	staleReads := fs.Int("stale-reads", 40, "percentage of stale reads (?stale=true)")
	prefix := fs.String("prefix", "bench/", "path prefix of the secrets the bench writes")
	populate := fs.Int("populate", 0, "instead of a timed run, write `N` secrets <prefix>pop/<i> and report each node's memory")
	output := fs.String("o", "text", "output format: text or json")

	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		x.benchUsage(x.stdout, fs)
		return 0
	case err != nil:
		return x.benchUsageFailure(fs, err.Error())
	case fs.NArg() > 0:
		return x.benchUsageFailure(fs, fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["addr"] {
		*addr = cmp.Or(x.getenv("KEYWARD_ADDR"), defaultAddr)
	}
	if !set["ca-cert"] {
		*caCert = x.getenv("KEYWARD_CACERT")
	}
	if !set["token"] {
		*token = x.getenv("KEYWARD_TOKEN")
	}
	cfg := benchConfig{addrs: splitBenchAddrs(*addr), caCert: *caCert, token: *token,
		concurrency: *concurrency, duration: *duration, warmup: *warmup, valueSize: *valueSize,
		keys: *keys, prefix: *prefix, populate: *populate, json: *output == "json"}
	cfg.mix, err = parseMix(*writes, *reads, *staleReads)
	switch {
	case err != nil:
		return x.benchUsageFailure(fs, err.Error())
	case len(cfg.addrs) == 0:
		return x.benchUsageFailure(fs, "--addr lists no server")
	case cfg.concurrency < 1:
		return x.benchUsageFailure(fs, "--concurrency must be at least 1")
	case cfg.duration <= 0:
		return x.benchUsageFailure(fs, "--duration must be positive")
	case cfg.warmup < 0:
		return x.benchUsageFailure(fs, "--warmup must not be negative")
	case cfg.valueSize < 1 || cfg.valueSize > wire.MaxValueBytes:
		return x.benchUsageFailure(fs, fmt.Sprintf("--value-size must be from 1 to %d", wire.MaxValueBytes))
	case cfg.keys < 1:
		return x.benchUsageFailure(fs, "--keys must be at least 1")
	case cfg.populate < 0:
		return x.benchUsageFailure(fs, "--populate must not be negative")
	case cfg.prefix != "" && (strings.HasPrefix(cfg.prefix, "/") || strings.Contains(cfg.prefix, "//")):
		return x.benchUsageFailure(fs, fmt.Sprintf("--prefix %q would make paths with an empty segment", cfg.prefix))
	case *output != "text" && *output != "json":
		return x.benchUsageFailure(fs, fmt.Sprintf("-o must be text or json, not %q", *output))
	}

	tlsCfg, err := loadBenchTLS(cfg.caCert)
	if err != nil {
		fmt.Fprintf(x.stderr, "error: %v\n", err)
		return 1
	}
	nodes := make([]benchNode, 0, len(cfg.addrs))
	for _, a := range cfg.addrs {
		// WithTLSConfig also gives plain-http clients a keep-alive pool sized for many workers.
		c, err := client.New(a, client.WithToken(cfg.token),
			client.WithHTTPClient(&http.Client{Timeout: benchOpTimeout}), client.WithTLSConfig(tlsCfg))
		if err != nil {
			return x.benchUsageFailure(fs, err.Error())
		}
		nodes = append(nodes, benchNode{addr: a, c: c})
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if cfg.populate > 0 {
		return x.benchPopulate(ctx, cfg, nodes)
	}
	return x.benchRun(ctx, cfg, nodes)
}

// loadBenchTLS returns the TLS configuration trusting the CA in the PEM file caCert, or nil
// (Go's defaults, the system roots) when caCert is empty.
func loadBenchTLS(caCert string) (*tls.Config, error) {
	if caCert == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(caCert)
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("read CA certificate: no PEM certificate in %s", caCert)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// benchUsageFailure reports a command-line mistake with the usage and returns status 2.
func (x cli) benchUsageFailure(fs *flag.FlagSet, msg string) int {
	fmt.Fprintf(x.stderr, "error: %s\n\n", msg)
	x.benchUsage(x.stderr, fs)
	return 2
}

// benchUsage prints the usage of `keyward bench` to w.
func (x cli) benchUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, `Usage: keyward bench [--addr URL[,URL...]] [--ca-cert FILE] [--token T]
                     [--concurrency 64] [--duration 30s] [--warmup 2s] [--value-size 1024]
                     [--keys 1000] [--writes 20] [--reads 40] [--stale-reads 40]
                     [--prefix bench/] [--populate N] [-o text|json]

Generates load against one or more keyward nodes. It first writes each of the --keys secrets
once (untimed), then runs --concurrency workers, spread round-robin over the nodes, for
--warmup plus --duration; each operation is a write of a random --value-size value, a
linearizable read or a stale read of a random key, in the given percentages. It prints, per
operation and in total, the successful operations, their throughput and latency percentiles
(measured after the warmup), and the errors by code.

With --populate N it instead writes N secrets <prefix>pop/<i> of --value-size bytes, prints
the write throughput and each node's resident memory (process_resident_memory_bytes from
GET /metrics) next to the budget 2 x stored ciphertext + 64 MiB, where the stored ciphertext is
about N x (value-size + 29) bytes.

Exits 0 when the run completes, even with errors; 1 when nothing succeeded or the setup failed;
2 on a usage mistake.

keyward bench fsync [--dir DIR] measures instead what one audit record's sync costs on a disk
(see keyward bench fsync --help).

Flags:
`)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}
