package agent

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyward/keyward/api/client"
)

// metrics are the agent's counters, in a registry of their own with the cache's collector.
type metrics struct {
	reg                                               *prometheus.Registry
	renders, renderErrors, commandRuns, commandErrors prometheus.Counter
	requests                                          *prometheus.CounterVec
}

func newMetrics(cache *client.Cache, cl *client.Client) *metrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "keyward_agent_" + name, Help: help})
	}
	m := &metrics{
		reg:           prometheus.NewRegistry(),
		renders:       counter("renders_total", "Rendered files written because their content changed."),
		renderErrors:  counter("render_errors_total", "Renders that failed (a secret could not be read, or the file not written); the old file was kept."),
		commandRuns:   counter("command_runs_total", "On-change commands started."),
		commandErrors: counter("command_errors_total", "On-change commands that failed or timed out."),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyward_agent_requests_total",
			Help: "Requests to the local endpoint, by status code."}, []string{"code"}),
	}
	logins := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keyward_agent_logins_total",
		Help: "Logins to the cluster."}, func() float64 { return float64(cl.AuthStats().Logins) })
	failures := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keyward_agent_login_failures_total",
		Help: "Logins and renewals that failed."}, func() float64 { return float64(cl.AuthStats().LoginFailures) })
	renewals := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keyward_agent_token_renewals_total",
		Help: "Token renewals."}, func() float64 { return float64(cl.AuthStats().Renewals) })
	m.reg.MustRegister(cache.Collector(), m.renders, m.renderErrors, m.commandRuns, m.commandErrors, m.requests,
		logins, failures, renewals)
	return m
}
