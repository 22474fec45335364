package rotation

import "github.com/prometheus/client_golang/prometheus"

// Metrics count the runner's work for Prometheus.
type Metrics struct {
	steps     *prometheus.CounterVec
	rotations *prometheus.CounterVec
	purged    prometheus.Counter
	leading   prometheus.Gauge
}

// NewMetrics returns unregistered metrics; register Collectors().
func NewMetrics() *Metrics {
	return &Metrics{
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyward_rotation_steps_total",
			Help: "Rotation protocol steps taken by this node as leader, by step reached and result (ok, error).",
		}, []string{"step", "result"}),
		rotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyward_rotations_total",
			Help: "Rotations this node ended as leader, by outcome (succeeded, failed).",
		}, []string{"outcome"}),
		purged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyward_purged_secrets_total",
			Help: "Soft-deleted secrets this node purged as leader after their recovery window.",
		}),
		leading: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keyward_rotation_runner_active",
			Help: "1 while this node's rotation runner is running (it leads the cluster).",
		}),
	}
}

// Collectors returns the metrics to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.steps, m.rotations, m.purged, m.leading}
}
