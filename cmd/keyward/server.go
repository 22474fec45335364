package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/keyward/keyward/api"
	"github.com/keyward/keyward/api/wire"
	"github.com/keyward/keyward/cluster"
	"github.com/keyward/keyward/fsm"
	"github.com/keyward/keyward/kms"
	"github.com/keyward/keyward/store"
)

// serverConfig is everything `keyward server` takes from flags and the environment.
type serverConfig struct {
	dev          bool
	devRootToken string
	nodeID       string
	dataDir      string
	httpAddr     string
	raftAddr     string
	kekProvider  string
	kekFile      string
	awsKeyID     string
	awsRegion    string
	awsEndpoint  string
	logLevel     string
	logFormat    string
	snapshotThr  uint64
}

func parseServerFlags(args []string, stderr io.Writer) (*serverConfig, error) {
	c := &serverConfig{}
	fs := flag.NewFlagSet("keyward server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&c.dev, "dev", false, "single node with embedded defaults: local KEK, temp data dir, plain HTTP on 127.0.0.1:8200")
	fs.StringVar(&c.devRootToken, "dev-root-token", env("KEYWARD_DEV_ROOT_TOKEN", ""), "dev mode: the root token to create (used once authentication is enforced)")
	fs.StringVar(&c.nodeID, "node-id", env("KEYWARD_NODE_ID", ""), "this node's id (default: the host name)")
	fs.StringVar(&c.dataDir, "data-dir", env("KEYWARD_DATA_DIR", ""), "directory for Raft log, snapshots and (by default) the local KEK")
	fs.StringVar(&c.httpAddr, "http-addr", env("KEYWARD_HTTP_ADDR", "127.0.0.1:8200"), "HTTP API listen address")
	fs.StringVar(&c.raftAddr, "raft-addr", env("KEYWARD_RAFT_ADDR", "127.0.0.1:8201"), "Raft listen address")
	fs.StringVar(&c.kekProvider, "kek-provider", env("KEYWARD_KEK_PROVIDER", "local"), "key-encryption-key provider: local or awskms")
	fs.StringVar(&c.kekFile, "kek-file", env("KEYWARD_KEK_FILE", ""), "local provider: KEK file, created with mode 0600 if missing (default DATA_DIR/kek.key)")
	fs.StringVar(&c.awsKeyID, "aws-kms-key-id", env("KEYWARD_AWS_KMS_KEY_ID", ""), "awskms provider: key id, alias or ARN")
	fs.StringVar(&c.awsRegion, "aws-region", env("AWS_REGION", ""), "awskms provider: region")
	fs.StringVar(&c.awsEndpoint, "aws-kms-endpoint", env("KEYWARD_AWS_KMS_ENDPOINT", ""), "awskms provider: endpoint URL (optional)")
	fs.StringVar(&c.logLevel, "log-level", env("KEYWARD_LOG_LEVEL", "info"), "debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", env("KEYWARD_LOG_FORMAT", "text"), "text or json")
	fs.Uint64Var(&c.snapshotThr, "snapshot-threshold", 8192, "Raft log entries between automatic snapshots")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if c.nodeID == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "node1"
		}
		c.nodeID = h
	}
	if c.dataDir == "" && !c.dev {
		return nil, errors.New("--data-dir is required outside dev mode")
	}
	return c, nil
}

func env(key, def string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return def
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, not %q", format)
}

// runServer is the `keyward server` subcommand. It returns the process exit code.
func runServer(args []string) int {
	cfg, err := parseServerFlags(args, os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "error:", err)
		return 2
	}
	log, err := newLogger(os.Stderr, cfg.logLevel, cfg.logFormat)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, cfg, log); err != nil {
		log.Error("server stopped", "err", err)
		return 1
	}
	return 0
}

func serve(ctx context.Context, cfg *serverConfig, log *slog.Logger) error {
	if cfg.dev && cfg.dataDir == "" {
		dir, err := os.MkdirTemp("", "keyward-dev-")
		if err != nil {
			return err
		}
		cfg.dataDir = dir
	}
	if err := os.MkdirAll(cfg.dataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	provider, err := openProvider(ctx, cfg, log)
	if err != nil {
		return err
	}
	envelope := kms.NewEnvelope(provider, kms.CacheOptions{})

	machine := fsm.New(log.With("component", "fsm"))
	node, err := cluster.Open(cluster.Config{
		NodeID: cfg.nodeID, DataDir: cfg.dataDir, RaftAddr: cfg.raftAddr,
		Bootstrap: true, FSM: machine, Noop: fsm.MustEncode(fsm.CmdNoop, fsm.Noop{}), Codec: fsm.Codec{}, Log: log,
		SnapshotThreshold: cfg.snapshotThr,
	})
	if err != nil {
		return err
	}
	defer func() {
		if err := node.Close(); err != nil {
			log.Warn("closing raft", "err", err)
		}
	}()

	svc := store.New(store.Deps{Proposer: node, State: machine, Reads: node, Sealer: envelope, Log: log})
	handler := api.New(api.Deps{Secrets: svc, Health: healthSource{node: node, fsm: machine}, Raft: node, Log: log})

	ln, err := net.Listen("tcp", cfg.httpAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.httpAddr, err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	addr := "http://" + ln.Addr().String()
	log.Info("keyward listening", "http", addr, "raft", cfg.raftAddr, "node_id", cfg.nodeID,
		"data_dir", cfg.dataDir, "kek_provider", provider.Name(), "kek_id", provider.KeyID(), "dev", cfg.dev)
	if cfg.dev {
		log.Warn("dev mode: plain HTTP, single node, KEK stored next to the data; never use it for real secrets")
		fmt.Fprintf(os.Stderr, "\nkeyward dev server is up. In another shell:\n\n"+
			"    export KEYWARD_ADDR=%s\n"+
			"    printf 's3cr3t' | keyward secret put prod/payments/db-password\n"+
			"    keyward secret get prod/payments/db-password\n\n", addr)
	}

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

func openProvider(ctx context.Context, cfg *serverConfig, log *slog.Logger) (kms.Provider, error) {
	switch strings.ToLower(cfg.kekProvider) {
	case "local":
		path := cfg.kekFile
		if path == "" {
			path = filepath.Join(cfg.dataDir, "kek.key")
			if !cfg.dev {
				log.Warn("the local KEK file lives in the data dir; keep it elsewhere with --kek-file so a copy of the data alone cannot be decrypted", "kek_file", path)
			}
		}
		return kms.NewLocal(path)
	case "awskms":
		if cfg.awsKeyID == "" {
			return nil, errors.New("--aws-kms-key-id is required with --kek-provider awskms")
		}
		return kms.NewAWS(ctx, kms.AWSConfig{KeyID: cfg.awsKeyID, Region: cfg.awsRegion, Endpoint: cfg.awsEndpoint})
	}
	return nil, fmt.Errorf("unknown --kek-provider %q (local or awskms)", cfg.kekProvider)
}

// healthSource adapts the Raft node and FSM to the API's health report.
type healthSource struct {
	node *cluster.Node
	fsm  *fsm.FSM
}

func (h healthSource) Health() wire.HealthResponse {
	st := h.node.Status()
	return wire.HealthResponse{
		NodeID: st.NodeID, State: st.State, Leader: st.LeaderID,
		AppliedIndex: h.fsm.AppliedIndex(), CommitIndex: st.CommitIndex,
		LastContactMS: st.LastContact.Milliseconds(),
	}
}
