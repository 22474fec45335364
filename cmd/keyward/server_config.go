package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/keyward/keyward/store/audit"
)

// serverConfig is everything `keyward server` takes. Each setting comes from, in order of
// precedence: its flag, its environment variable (KEYWARD_ + the flag name upper-cased with
// '-' as '_'), the JSON config file given by --config (keys are the flag names), the default.
type serverConfig struct {
	configFile   string
	dev          bool
	devRootToken string
	nodeID       string
	dataDir      string
	httpAddr     string
	advertiseAPI string
	raftAddr     string
	advertise    string
	gossipAddr   string
	gossipKey    string
	join         string
	expect       int
	readReplica  bool
	tlsCert      string
	tlsKey       string
	tlsCA        string
	tlsClientCA  string
	kekProvider  string
	kekFile      string
	awsKeyID     string
	awsRegion    string
	awsEndpoint  string
	logLevel     string
	logFormat    string
	snapshotThr  uint64
	autoSnapDir  string
	autoSnapInt  time.Duration
	autoSnapKeep int
	deadCleanup  time.Duration
	pprofAddr    string
	auditKeep    time.Duration
	auditDir     string
	auditGather  time.Duration
	auditShip    time.Duration
	// Rotation (rotation package): recovery window of soft-deleted secrets, retry backoff, and
	// the test-only pause hook directory.
	recoveryWindow  time.Duration
	rotationBackoff time.Duration
	rotationHookDir string
}

func serverFlags(c *serverConfig, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("keyward server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.configFile, "config", "", "JSON config file whose keys are these flag names")
	fs.BoolVar(&c.dev, "dev", false, "single node with embedded defaults: local KEK, temp data dir, plain HTTP on 127.0.0.1:8200")
	fs.StringVar(&c.devRootToken, "dev-root-token", "", "dev mode: the root token to create (used once authentication is enforced)")
	fs.StringVar(&c.nodeID, "node-id", "", "this node's id (default: the host name)")
	fs.StringVar(&c.dataDir, "data-dir", "", "directory for the Raft log, snapshots and (by default) the local KEK")
	fs.StringVar(&c.httpAddr, "http-addr", "127.0.0.1:8200", "HTTP API listen address")
	fs.StringVar(&c.advertiseAPI, "advertise-http", "", "API URL other nodes and redirects use (default from --http-addr)")
	fs.StringVar(&c.raftAddr, "raft-addr", "127.0.0.1:8201", "cluster listen address (Raft and node-to-node RPC)")
	fs.StringVar(&c.advertise, "advertise-raft", "", "cluster address other nodes use (default --raft-addr)")
	fs.StringVar(&c.gossipAddr, "gossip-addr", "", "gossip (memberlist) address, TCP and UDP (default: --raft-addr's port + 1; off in dev mode)")
	fs.StringVar(&c.gossipKey, "gossip-key", "", "base64 gossip encryption key of 16, 24 or 32 bytes (keyward operator keygen); required outside dev mode")
	fs.StringVar(&c.join, "join", "", "comma-separated cluster addresses of other members: join their cluster, or with --bootstrap-expect find each other (retried until it succeeds)")
	fs.IntVar(&c.expect, "bootstrap-expect", 0, "form a new cluster once this many servers see each other over gossip")
	fs.BoolVar(&c.readReplica, "read-replica", false, "join as a non-voting read replica")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "this node's certificate (PEM), from the cluster CA")
	fs.StringVar(&c.tlsKey, "tls-key", "", "this node's key (PEM)")
	fs.StringVar(&c.tlsCA, "tls-ca", "", "the cluster CA certificate (PEM): peers must present certificates it signed")
	fs.StringVar(&c.tlsClientCA, "tls-client-ca", "", "CA of API client certificates (optional)")
	fs.StringVar(&c.kekProvider, "kek-provider", "local", "key-encryption-key provider: local or awskms")
	fs.StringVar(&c.kekFile, "kek-file", "", "local provider: KEK file, created with mode 0600 if missing (default DATA_DIR/kek.key)")
	fs.StringVar(&c.awsKeyID, "aws-kms-key-id", "", "awskms provider: key id, alias or ARN")
	fs.StringVar(&c.awsRegion, "aws-region", "", "awskms provider: region")
	fs.StringVar(&c.awsEndpoint, "aws-kms-endpoint", "", "awskms provider: endpoint URL (optional)")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "text", "text or json")
	fs.Uint64Var(&c.snapshotThr, "snapshot-threshold", 8192, "Raft log entries between automatic Raft snapshots")
	fs.StringVar(&c.autoSnapDir, "auto-snapshot-dir", "", "directory for automatic snapshot files taken by the leader (off when empty)")
	fs.DurationVar(&c.autoSnapInt, "auto-snapshot-interval", time.Hour, "interval of automatic snapshot files")
	fs.IntVar(&c.autoSnapKeep, "auto-snapshot-retain", 24, "automatic snapshot files to keep")
	fs.DurationVar(&c.deadCleanup, "dead-server-cleanup", 0, "remove a voter dead this long if at least three voters remain (0: off)")
	fs.StringVar(&c.auditDir, "audit-dir", "", "directory of this node's local audit log, fsynced before every answer (default DATA_DIR/audit); a disk of its own keeps those flushes off the Raft log's")
	fs.DurationVar(&c.auditShip, "audit-ship-interval", audit.DefaultShipInterval, "about how long the node gathers durable audit records into one batch before committing them through Raft (a batch of 4096 ships at once); shorter: the cluster's log is more current, at more Raft entries")
	fs.DurationVar(&c.auditGather, "audit-group-delay", audit.DefaultGroupDelay, "while requests come concurrently, how long the audit log gathers their records before each fsync, so that more share one (0: none)")
	fs.DurationVar(&c.auditKeep, "audit-retention", 0, "drop committed audit records older than this (0: keep forever)")
	fs.DurationVar(&c.recoveryWindow, "recovery-window", 30*24*time.Hour, "the leader purges soft-deleted secrets this long after their deletion (0: keep them until purged by hand)")
	fs.DurationVar(&c.rotationBackoff, "rotation-backoff", time.Second, "first retry delay of a failed rotation step; doubles per attempt up to 1m, and a step before promotion is tried 3 times")
	fs.StringVar(&c.rotationHookDir, "rotation-test-hook-dir", "", "TESTS ONLY: directory of pause-at-STEP files that make the rotation runner stop after recording STEP")
	fs.StringVar(&c.pprofAddr, "pprof-addr", "", "serve Go's net/http/pprof on this (loopback) address, for profiling (off when empty)")
	return fs
}

func parseServerFlags(args []string, stderr io.Writer) (*serverConfig, error) {
	c := &serverConfig{}
	fs := serverFlags(c, stderr)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := applyEnvAndFile(fs, c.configFile); err != nil {
		return nil, err
	}
	return c, c.finish()
}

// applyEnvAndFile fills every flag not given on the command line from the environment, then
// from the config file.
func applyEnvAndFile(fs *flag.FlagSet, file string) error {
	if file == "" {
		file = os.Getenv("KEYWARD_CONFIG")
	}
	fileVals := map[string]any{}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("config file: %w", err)
		}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.UseNumber()
		if err := dec.Decode(&fileVals); err != nil {
			return fmt.Errorf("config file %s: %w", file, err)
		}
		for k := range fileVals {
			if fs.Lookup(k) == nil || k == "config" {
				return fmt.Errorf("config file %s: unknown setting %q", file, k)
			}
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		env := "KEYWARD_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s: %w", env, e)
			}
			return
		}
		if v, ok := fileVals[f.Name]; ok {
			if e := fs.Set(f.Name, fmt.Sprint(v)); e != nil {
				err = fmt.Errorf("config file setting %q: %w", f.Name, e)
			}
		}
	})
	return err
}

// finish fills derived defaults and checks combinations.
func (c *serverConfig) finish() error {
	if c.nodeID == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "node1"
		}
		c.nodeID = h
	}
	if c.dataDir == "" && !c.dev {
		return errors.New("--data-dir is required outside dev mode")
	}
	tlsGiven := c.tlsCert != "" || c.tlsKey != "" || c.tlsCA != ""
	if tlsGiven && (c.tlsCert == "" || c.tlsKey == "" || c.tlsCA == "") {
		return errors.New("--tls-cert, --tls-key and --tls-ca go together")
	}
	if !c.dev && !tlsGiven {
		return errors.New("TLS is required outside dev mode: give --tls-cert, --tls-key and --tls-ca (keyward tls --help)")
	}
	if c.expect < 0 {
		return errors.New("--bootstrap-expect must not be negative")
	}
	if c.readReplica && c.expect > 0 {
		return errors.New("a read replica joins an existing cluster: use --join, not --bootstrap-expect")
	}
	if c.gossipAddr == "" && (!c.dev || c.join != "" || c.expect > 0) {
		host, port, err := net.SplitHostPort(c.raftAddr)
		if err != nil {
			return fmt.Errorf("--raft-addr: %w", err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p == 0 {
			return errors.New("--gossip-addr is required when --raft-addr has no fixed port")
		}
		c.gossipAddr = net.JoinHostPort(host, strconv.Itoa(p+1))
	}
	if c.gossipAddr != "" && c.gossipKey == "" && !c.dev {
		return errors.New("--gossip-key is required outside dev mode (keyward operator keygen makes one)")
	}
	return nil
}

func (c *serverConfig) gossipKeyBytes() ([]byte, error) {
	if c.gossipKey == "" {
		return nil, nil
	}
	k, err := base64.StdEncoding.DecodeString(c.gossipKey)
	if err != nil {
		return nil, fmt.Errorf("--gossip-key is not base64: %w", err)
	}
	switch len(k) {
	case 16, 24, 32:
		return k, nil
	}
	return nil, fmt.Errorf("--gossip-key must be 16, 24 or 32 bytes, not %d", len(k))
}

func (c *serverConfig) joinAddrs() []string {
	var out []string
	for _, a := range strings.Split(c.join, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}
