package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/keyward/keyward/api"
	"github.com/keyward/keyward/api/wire"
	"github.com/keyward/keyward/cluster"
	"github.com/keyward/keyward/cluster/certs"
	"github.com/keyward/keyward/fsm"
	"github.com/keyward/keyward/kms"
	"github.com/keyward/keyward/store"
	"github.com/keyward/keyward/store/audit"
	"github.com/keyward/keyward/store/jwtauth"
)

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

	var peer *certs.Peer
	var apiTLS *tls.Config
	if cfg.tlsCert != "" {
		if peer, err = certs.LoadPeer(cfg.tlsCert, cfg.tlsKey, cfg.tlsCA); err != nil {
			return err
		}
		if apiTLS, err = certs.APIServerConfig(cfg.tlsCert, cfg.tlsKey, cfg.tlsClientCA); err != nil {
			return err
		}
	}
	gossipKey, err := cfg.gossipKeyBytes()
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.httpAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.httpAddr, err)
	}
	apiURL := advertisedURL(cfg, ln.Addr(), apiTLS != nil)

	machine := fsm.New(log.With("component", "fsm"))
	ccfg := cluster.Config{
		NodeID: cfg.nodeID, DataDir: cfg.dataDir, RaftAddr: cfg.raftAddr, Advertise: cfg.advertise,
		HTTPAddr: apiURL, GossipAddr: cfg.gossipAddr, GossipKey: gossipKey, Join: cfg.joinAddrs(),
		BootstrapExpect: cfg.expect, ReadReplica: cfg.readReplica, DeadServerCleanup: cfg.deadCleanup,
		Bootstrap: cfg.expect == 0 && cfg.join == "",
		FSM:       machine, Codec: fsm.Codec{}, Noop: fsm.MustEncode(fsm.CmdNoop, fsm.Noop{}),
		Log: log, SnapshotThreshold: cfg.snapshotThr,
	}
	if peer != nil {
		ccfg.ServerTLS, ccfg.ClientTLS = peer.ServerConfig(), peer.ClientConfig()
	}
	node, err := cluster.Open(ccfg)
	if err != nil {
		ln.Close()
		return err
	}
	defer func() {
		if err := node.Close(); err != nil {
			log.Warn("closing raft", "err", err)
		}
	}()

	auditDir := cfg.auditDir
	if auditDir == "" {
		auditDir = filepath.Join(cfg.dataDir, "audit")
	}
	gather := cfg.auditGather
	if gather <= 0 {
		gather = -1 // none
	}
	auditLog, err := audit.Open(audit.Options{Dir: auditDir, NodeID: cfg.nodeID, GroupDelay: gather,
		ShipInterval: cfg.auditShip, Log: log})
	if err != nil {
		return err
	}
	defer auditLog.Close()
	svc := store.New(store.Deps{Proposer: node, State: machine, Reads: node, Restorer: node, Sealer: envelope,
		Audit: auditLog, NodeID: cfg.nodeID, JWT: jwtauth.NewVerifier(nil, 0, nil), Log: log})
	zip, err := fsm.NewAuditCompressor()
	if err != nil {
		return err
	}
	go auditLog.Run(ctx, audit.ShipDeps{
		Ship: func(ctx context.Context, batch *fsm.AppendAuditLines) error {
			resp, _, err := node.Apply(ctx, zip.Encode(batch))
			if err != nil {
				return err
			}
			if r, ok := resp.(*fsm.Result); ok && r.Err != nil {
				return r.Err
			}
			return nil
		},
		Committed: func() uint64 { return machine.State().AuditCommitted(cfg.nodeID) },
	})
	if cfg.dev {
		go devInit(ctx, svc, node, cfg.devRootToken, log)
	}
	if cfg.auditKeep > 0 {
		go pruneAudit(ctx, svc, node, cfg.auditKeep, log)
	}
	reg := newMetrics(node, machine, envelope, auditLog)
	rotations, rotationMetrics := startRotation(ctx, cfg, svc, node, log)
	reg.registry.MustRegister(rotationMetrics...)
	handler := api.New(api.Deps{
		Secrets: svc, Identity: svc, Accounts: svc, Rotation: rotations, Health: healthSource{node: node, fsm: machine}, Cluster: node,
		Metrics: promhttp.HandlerFor(reg.registry, promhttp.HandlerOpts{}), Observer: reg, Log: log,
	})
	if cfg.autoSnapDir != "" {
		go store.AutoSnapshots(ctx, svc, node.LeaderReady, store.AutoSnapshotConfig{
			Dir: cfg.autoSnapDir, Interval: cfg.autoSnapInt, Retain: cfg.autoSnapKeep, Log: log,
		})
	}

	if cfg.pprofAddr != "" {
		go servePprof(cfg.pprofAddr, log)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 5 * time.Minute,
		WriteTimeout: 5 * time.Minute, IdleTimeout: 120 * time.Second, TLSConfig: apiTLS,
		// HTTP/1.1 only: for many small requests over kept-alive connections it costs less CPU
		// per request than HTTP/2, and clients here are services with connection pools.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}}
	errc := make(chan error, 1)
	go func() {
		if apiTLS != nil {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()

	log.Info("keyward listening", "api", apiURL, "raft", cfg.raftAddr, "gossip", cfg.gossipAddr, "node_id", cfg.nodeID,
		"data_dir", cfg.dataDir, "kek_provider", provider.Name(), "kek_id", provider.KeyID(), "dev", cfg.dev,
		"tls", apiTLS != nil)
	if apiTLS == nil {
		log.Warn("plain HTTP: API and cluster traffic are not encrypted; dev mode only")
	}
	if cfg.dev {
		log.Warn("dev mode: single node, KEK stored next to the data; never use it for real secrets")
		fmt.Fprintf(os.Stderr, "\nkeyward dev server is up. In another shell:\n\n"+
			"    export KEYWARD_ADDR=%s\n"+
			"    printf 's3cr3t' | keyward secret put prod/payments/db-password\n"+
			"    keyward secret get prod/payments/db-password\n\n", apiURL)
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

// devInit initializes a dev-mode cluster once it has a leader, with the given root token (or
// a generated one, printed).
func devInit(ctx context.Context, svc *store.Service, node *cluster.Node, rootToken string, log *slog.Logger) {
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for !node.LeaderReady() {
		select {
		case <-wctx.Done():
			log.Error("dev mode: no leader to initialize the cluster")
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
	if svc.Initialized() {
		return
	}
	l, err := svc.Init(wctx, "admin", "", rootToken)
	if err != nil {
		log.Error("dev mode: init failed", "err", err)
		return
	}
	if rootToken == "" {
		fmt.Fprintf(os.Stderr, "\nDev root token (shown once): %s\n    export KEYWARD_TOKEN=%s\n\n", l.Token, l.Token)
	}
	log.Info("dev mode: cluster initialized", "admin", l.Principal)
}

// pruneAudit applies audit retention from the leader, a few times per retention period.
func pruneAudit(ctx context.Context, svc *store.Service, node *cluster.Node, keep time.Duration, log *slog.Logger) {
	t := time.NewTicker(min(max(keep/10, time.Second), time.Hour))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if node.LeaderReady() {
			if err := svc.PruneAudit(ctx, keep); err != nil {
				log.Warn("audit retention", "err", err)
			}
		}
	}
}

// advertisedURL is the API URL other nodes hand out: --advertise-http, or the listen address
// with a wildcard host replaced by the cluster address's host.
func advertisedURL(cfg *serverConfig, addr net.Addr, tlsOn bool) string {
	if cfg.advertiseAPI != "" {
		return cfg.advertiseAPI
	}
	scheme := "http"
	if tlsOn {
		scheme = "https"
	}
	host, port, _ := net.SplitHostPort(addr.String())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		adv := cfg.advertise
		if adv == "" {
			adv = cfg.raftAddr
		}
		host, _, _ = net.SplitHostPort(adv)
	}
	return scheme + "://" + net.JoinHostPort(host, port)
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

// servePprof serves the Go profiler on its own listener, never on the API port.
func servePprof(addr string, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Warn("pprof listening", "addr", addr)
	if err := srv.ListenAndServe(); err != nil {
		log.Error("pprof server", "err", err)
	}
}
