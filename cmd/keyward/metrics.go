package main

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/keyward/keyward/cluster"
	"github.com/keyward/keyward/fsm"
	"github.com/keyward/keyward/kms"
	"github.com/keyward/keyward/store/audit"
)

// nodeMetrics is the node's Prometheus registry: HTTP requests by route and status, Raft
// state, forwarding, KMS calls and the data-key cache, plus Go and process metrics.
type nodeMetrics struct {
	registry *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newMetrics(node *cluster.Node, machine *fsm.FSM, env *kms.Envelope, auditLog *audit.Log) *nodeMetrics {
	reg := prometheus.NewRegistry()
	m := &nodeMetrics{
		registry: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyward_http_requests_total", Help: "HTTP requests by method, route and status.",
		}, []string{"method", "route", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "keyward_http_request_duration_seconds", Help: "HTTP request latency by method and route.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}, []string{"method", "route"}),
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.latency,
		gauge("keyward_raft_is_leader", "1 when this node is the Raft leader.", func() float64 { return b2f(node.IsLeader()) }),
		gauge("keyward_raft_known_leader", "1 when this node knows a leader.", func() float64 { return b2f(node.KnownLeader()) }),
		gauge("keyward_raft_term", "Current Raft term.", func() float64 { return float64(node.Status().Term) }),
		gauge("keyward_raft_commit_index", "Raft commit index.", func() float64 { return float64(node.Status().CommitIndex) }),
		gauge("keyward_raft_applied_index", "Index applied by the state machine.", func() float64 { return float64(machine.AppliedIndex()) }),
		gauge("keyward_raft_last_contact_seconds", "Seconds since the last contact with the leader (0 on the leader, -1 never).", func() float64 {
			lc := node.LastContact()
			if lc < 0 {
				return -1
			}
			return lc.Seconds()
		}),
		counter("keyward_forwarded_applies_total", "Writes forwarded to the leader.", func() float64 { return float64(node.ForwardStats().Applies) }),
		counter("keyward_forwarded_read_index_total", "Read-index requests sent to the leader.", func() float64 { return float64(node.ForwardStats().ReadIndexes) }),
		counter("keyward_kms_calls_total", "Calls to the key-encryption-key provider.", func() float64 { return float64(env.Stats().ProviderCalls) }),
		counter("keyward_kms_datakey_cache_hits_total", "Data-key cache hits.", func() float64 { return float64(env.Stats().CacheHits) }),
		counter("keyward_kms_datakey_cache_misses_total", "Data-key cache misses.", func() float64 { return float64(env.Stats().CacheMisses) }),
		gauge("keyward_audit_pending_records", "Audit records durable on this node but not yet committed by the cluster.", func() float64 { return float64(auditLog.Pending()) }),
		counter("keyward_audit_syncs_total", "Syncs (fdatasync) of the local audit log; records_total over it is the records per sync.", func() float64 { return float64(auditLog.Stats().Syncs) }),
		counter("keyward_audit_records_total", "Audit records made durable in the local audit log.", func() float64 { return float64(auditLog.Stats().Records) }),
		gauge("keyward_secrets", "Secrets in the replicated state (soft-deleted included).", func() float64 { return float64(machine.State().SecretCount()) }),
	)
	return m
}

// Observe implements api.RequestObserver.
func (m *nodeMetrics) Observe(method, route string, status int, d time.Duration) {
	m.requests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(method, route).Observe(d.Seconds())
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
