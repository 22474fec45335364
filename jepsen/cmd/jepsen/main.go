// Command jepsen runs keyward's chaos suite: a cluster of real keyward processes in network
// namespaces (or behind loopback proxies without root), client workloads, faults, and checkers.
// See README.md ("Chaos suite") for how to read a run directory.
//
//	go run ./jepsen/cmd/jepsen -duration 30m -nodes 3
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/keyward/keyward/jepsen"
)

func main() {
	os.Exit(run())
}

func list(s string, all []string) []string {
	switch s {
	case "all":
		return all
	case "none", "":
		return []string{}
	}
	return strings.Split(s, ",")
}

func run() int {
	var cfg jepsen.Config
	var workloads, nemeses, tags string
	flag.StringVar(&cfg.Binary, "binary", "", "keyward binary to test (default: build ./cmd/keyward)")
	flag.StringVar(&tags, "tags", "", "build tags for the binary (keyward_unsafe: the broken variant)")
	flag.StringVar(&cfg.Dir, "dir", "", "run directory (default jepsen-runs/<time>)")
	flag.IntVar(&cfg.Nodes, "nodes", 3, "nodes: 3 or 5")
	flag.DurationVar(&cfg.Duration, "duration", 5*time.Minute, "how long workloads and faults run")
	flag.StringVar(&workloads, "workloads", "all", "comma-separated: "+strings.Join(jepsen.AllWorkloads, ",")+" or all")
	flag.StringVar(&nemeses, "nemeses", "all", "comma-separated: "+strings.Join(jepsen.AllNemeses, ",")+", all or none")
	flag.StringVar(&cfg.Network, "network", "", "netns, proxy, or empty: netns when root, else proxy")
	flag.IntVar(&cfg.Keys, "keys", 3, "hot register keys")
	flag.DurationVar(&cfg.KeyEpoch, "key-epoch", 5*time.Minute, "workloads move to fresh keys this often (bounds versions per secret)")
	flag.IntVar(&cfg.Workers, "workers", 0, "clients per workload (default: one per node)")
	flag.IntVar(&cfg.Rounds, "rounds", 0, "end the run once every nemesis ran this many times (0: run for -duration)")
	flag.DurationVar(&cfg.Quiet, "quiet", 8*time.Second, "time between faults")
	flag.DurationVar(&cfg.Fault, "fault", 10*time.Second, "how long a fault lasts")
	flag.DurationVar(&cfg.MaxStale, "max-stale", 2*time.Second, "max_stale of stale reads")
	flag.DurationVar(&cfg.LinTimeout, "lin-timeout", 5*time.Minute, "time budget of the linearizability checker")
	flag.BoolVar(&cfg.LenientStale, "lenient-stale", false, "report stale-read bound violations as known issues instead of failing")
	flag.DurationVar(&cfg.StaleAllowance, "stale-allowance", 0, "added to max_stale when checking stale reads")
	flag.Uint64Var(&cfg.Seed, "seed", 0, "random seed (default: time)")
	flag.Parse()
	cfg.Workloads = list(workloads, jepsen.AllWorkloads)
	cfg.Nemeses = list(nemeses, jepsen.AllNemeses)
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join("jepsen-runs", time.Now().UTC().Format("20060102T150405Z"))
	}
	cfg.Log = func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	if cfg.Binary == "" {
		tmp, err := os.MkdirTemp("", "keyward-jepsen-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		defer os.RemoveAll(tmp)
		cfg.Binary = filepath.Join(tmp, "keyward")
		args := []string{"build", "-o", cfg.Binary}
		if tags != "" {
			args = append(args, "-tags", tags)
		}
		cmd := exec.Command("go", append(args, "./cmd/keyward")...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build keyward:", err)
			return 2
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, err := jepsen.Run(ctx, cfg)
	if sum != nil {
		fmt.Printf("run directory: %s\noperations: %d %v\nvalid: %v\n", cfg.Dir, sum.Ops, sum.ByOutcome, sum.Valid)
	}
	switch {
	case errors.Is(err, jepsen.ErrViolations):
		fmt.Fprintln(os.Stderr, "FAIL: violations found; see", filepath.Join(cfg.Dir, "summary.json"))
		return 1
	case err != nil:
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	fmt.Println("PASS")
	return 0
}
