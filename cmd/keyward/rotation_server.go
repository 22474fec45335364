package main

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyward/keyward/cluster"
	"github.com/keyward/keyward/rotation"
	"github.com/keyward/keyward/rotation/rotators"
	"github.com/keyward/keyward/store"
)

// startRotation starts the leader-only rotation runner (rotations, timed version-state
// transitions, purge of expired soft-deleted secrets) and returns the rotation API and the
// runner's metrics.
func startRotation(ctx context.Context, cfg *serverConfig, svc *store.Service, node *cluster.Node, log *slog.Logger) (*rotation.Service, []prometheus.Collector) {
	if cfg.rotationHookDir != "" {
		log.Warn("rotation test hooks are on (--rotation-test-hook-dir): tests only")
	}
	m := rotation.NewMetrics()
	r := rotation.NewRunner(rotation.Config{
		Store: svc, Leader: node.LeaderReady, Rotators: rotators.All(), NodeID: cfg.nodeID,
		Backoff: cfg.rotationBackoff, RecoveryWindow: cfg.recoveryWindow, TestHookDir: cfg.rotationHookDir,
		Metrics: m, Log: log,
	})
	go r.Run(ctx)
	return rotation.NewService(svc, rotators.All(), nil), m.Collectors()
}
