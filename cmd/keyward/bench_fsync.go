package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/keyward/keyward/fsm"
	"github.com/keyward/keyward/store/audit"
)

// benchFsync is `keyward bench fsync`: what making one audit record durable costs on a disk.
// Every audited read waits for such a sync, so on a disk where it is dear, reads cost more.
func (x cli) benchFsync(args []string) int {
	fs := flag.NewFlagSet("keyward bench fsync", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	dir := fs.String("dir", ".", "`directory` on the disk to measure: where --audit-dir (or the data dir) of a node would be")
	records := fs.Int("records", 2000, "records to append, each after the previous one is durable")
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		x.benchFsyncUsage(x.stdout, fs)
		return 0
	case err != nil:
		return x.benchFsyncUsageFailure(fs, err.Error())
	case fs.NArg() > 0:
		return x.benchFsyncUsageFailure(fs, fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	case *records < 1 || *records > 1_000_000:
		return x.benchFsyncUsageFailure(fs, fmt.Sprintf("--records must be from 1 to 1000000, not %d", *records))
	}
	res, err := measureFsync(*dir, *records)
	if err != nil {
		fmt.Fprintf(x.stderr, "error: %v\n", err)
		return 1
	}
	fmt.Fprintf(x.stdout, "audit log in %s: %d records, each appended after the previous one was durable (%d syncs)\n",
		*dir, res.records, res.syncs)
	fmt.Fprintf(x.stdout, "wall time per record: median %s, p99 %s\n", us(res.median), us(res.p99))
	if res.cpu {
		fmt.Fprintf(x.stdout, "CPU time of this process per record: %s (user %s, system %s)\n",
			us(res.user+res.sys), us(res.user), us(res.sys))
	} else {
		fmt.Fprintln(x.stdout, "CPU time of this process per record: not measured on this system")
	}
	return 0
}

// fsyncResult is what measureFsync measured; the CPU times are per record.
type fsyncResult struct {
	records, syncs int
	median, p99    time.Duration
	user, sys      time.Duration
	cpu            bool // user and sys were measured
}

// measureFsync appends n records, one at a time, to a new audit log in a temporary directory
// under dir, which it removes afterwards.
func measureFsync(dir string, n int) (fsyncResult, error) {
	tmp, err := os.MkdirTemp(dir, ".keyward-bench-fsync-")
	if err != nil {
		return fsyncResult{}, err
	}
	defer os.RemoveAll(tmp)
	l, err := audit.Open(audit.Options{Dir: tmp, NodeID: "bench"})
	if err != nil {
		return fsyncResult{}, err
	}
	defer l.Close()
	rec := fsm.AuditRecord{ID: "00000000-0000-8000-8000-000000000000", SecretID: "00000000-0000-4000-8000-000000000000",
		Path: "bench/fsync", VersionID: "00000000-0000-4000-8000-000000000001", PrincipalType: "SERVICE",
		PrincipalID: "spiffe://example.org/bench", AuthMethod: "cert", Action: "READ", IPAddress: "192.0.2.1",
		Success: true, RequestID: "00000000-0000-8000-8000-000000000001"}
	// The first append creates the segment; leave it out of the figures.
	if _, err := l.Append(context.Background(), rec); err != nil {
		return fsyncResult{}, err
	}
	lat := make([]time.Duration, n)
	syncs0 := l.Stats().Syncs
	user0, sys0, cpu0 := cpuTimes()
	for i := range n {
		rec.AccessedAt = time.Now().UnixNano()
		start := time.Now()
		if _, err := l.Append(context.Background(), rec); err != nil {
			return fsyncResult{}, err
		}
		lat[i] = time.Since(start)
	}
	user1, sys1, cpu1 := cpuTimes()
	slices.Sort(lat)
	return fsyncResult{records: n, syncs: int(l.Stats().Syncs - syncs0),
		median: lat[n/2], p99: lat[min(n-1, n*99/100)],
		user: (user1 - user0) / time.Duration(n), sys: (sys1 - sys0) / time.Duration(n), cpu: cpu0 && cpu1}, nil
}

// us formats d in microseconds.
func us(d time.Duration) string { return fmt.Sprintf("%d µs", d.Microseconds()) }

func (x cli) benchFsyncUsageFailure(fs *flag.FlagSet, msg string) int {
	fmt.Fprintf(x.stderr, "error: %s\n\n", msg)
	x.benchFsyncUsage(x.stderr, fs)
	return 2
}

func (x cli) benchFsyncUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, `Usage: keyward bench fsync [--dir DIR] [--records 2000]

Measures what making one audit record durable costs on the disk holding DIR. A node appends
the record of every secret access to its local audit log and answers only once it is synced
(concurrent requests share a sync). This appends --records records to a new log in a
temporary directory under DIR, one at a time, each after the previous one is durable, and
prints the wall time per record and the CPU time this process spent per record. No cluster
is needed; the temporary directory is removed afterwards.

Flags:
`)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}
