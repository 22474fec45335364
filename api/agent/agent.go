// Package agent is `keyward agent`: a sidecar that logs in to a keyward cluster, keeps a set of
// secrets fresh through the client cache, renders them into files from templates, runs a
// command when a file changes, and serves the cached values to local processes. During a
// cluster outage it keeps serving the last values and never touches the rendered files.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"text/template"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyward/keyward/api/client"
)

// shutdownTimeout bounds how long the local endpoint waits for requests in flight on exit.
const shutdownTimeout = 5 * time.Second

// Agent is one running sidecar. Create it with New and start it with Run.
type Agent struct {
	cfg        *Config
	log        *slog.Logger
	cmdOut     io.Writer
	client     *client.Client
	cache      *client.Cache
	templates  []*templateState
	secrets    map[secretKey]bool // what the local endpoint serves
	secretErr  map[secretKey]string
	localToken string
	metrics    *metrics
}

// secretKey is a configured secret.
type secretKey struct {
	path string
	sel  client.Selector
}

// templateState is a parsed template and what the last render said.
type templateState struct {
	cfg     TemplateConfig
	tm      *template.Template
	lastErr string
}

// New checks cfg, parses the templates and prepares the client and cache; it makes no network
// call. Logs go to log; the output of on-change commands goes to cmdOut.
func New(cfg *Config, log *slog.Logger, cmdOut io.Writer) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts, err := cfg.clientOptions()
	if err != nil {
		return nil, err
	}
	cl, err := client.New(cfg.Addr, opts...)
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, log: log, cmdOut: cmdOut, client: cl,
		secrets: map[secretKey]bool{}, secretErr: map[secretKey]string{}}
	for _, s := range cfg.Secrets {
		a.secrets[secretKey{s.Path, s.Selector()}] = true
	}
	for _, t := range cfg.Templates {
		tm, err := parseTemplate(t)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		a.templates = append(a.templates, &templateState{cfg: t, tm: tm})
	}
	if cfg.Listen.TokenFile != "" {
		b, err := os.ReadFile(cfg.Listen.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("listen token file: %w", err)
		}
		if a.localToken = strings.TrimSpace(string(b)); a.localToken == "" {
			return nil, fmt.Errorf("%w: listen token file %s is empty", ErrConfig, cfg.Listen.TokenFile)
		}
	}
	timeout := time.Duration(cfg.FetchTimeout)
	a.cache = client.NewCache(func(ctx context.Context, path string, sel client.Selector) (*client.Secret, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return cl.Get(ctx, path, sel)
	}, client.CacheOptions{TTL: time.Duration(cfg.Cache.TTL), StaleAlert: time.Duration(cfg.Cache.StaleAlert), Log: log})
	a.metrics = newMetrics(a.cache, cl)
	return a, nil
}

// Close stops the cache's background refreshes; Run does it on return. Needed only when Tick
// is used without Run.
func (a *Agent) Close() { a.cache.Close() }

// Registry returns the agent's Prometheus registry, served on /metrics.
func (a *Agent) Registry() *prometheus.Registry { return a.metrics.reg }

// Run serves the local endpoint (when configured) and renders every RenderInterval until ctx
// ends, then stops serving (waiting briefly for requests in flight) and returns nil. It
// returns an error only when the endpoint cannot listen.
func (a *Agent) Run(ctx context.Context) error {
	defer a.cache.Close()
	var srv *http.Server
	served := make(chan error, 1)
	if a.cfg.Listen.Address != "" {
		l, cleanup, err := a.listen()
		if err != nil {
			return err
		}
		defer cleanup()
		srv = &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second}
		go func() { served <- srv.Serve(l) }()
	}
	a.log.Info("keyward agent started", "addr", a.cfg.Addr, "auth", a.cfg.Auth.Method,
		"listen", a.cfg.Listen.Address, "secrets", len(a.cfg.Secrets), "templates", len(a.templates),
		"ttl", time.Duration(a.cfg.Cache.TTL).String(), "render_interval", time.Duration(a.cfg.RenderInterval).String())
	t := time.NewTicker(time.Duration(a.cfg.RenderInterval))
	defer t.Stop()
	for {
		a.Tick(ctx)
		select {
		case <-ctx.Done():
			a.log.Info("keyward agent stopping")
			if srv != nil {
				sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
				_ = srv.Shutdown(sctx)
				cancel()
			}
			return nil
		case err := <-served:
			return fmt.Errorf("local endpoint: %w", err)
		case <-t.C:
		}
	}
}

// Tick reads the configured secrets through the cache (keeping them fresh) and renders every
// template once.
func (a *Agent) Tick(ctx context.Context) {
	for k := range a.secrets {
		_, _, err := a.cache.Get(ctx, k.path, k.sel)
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		if msg != a.secretErr[k] {
			if err != nil {
				a.log.Warn("cannot read secret", "path", k.path, "version", k.sel.Version, "state", k.sel.State, "err", msg)
			} else {
				a.log.Info("secret readable again", "path", k.path)
			}
			a.secretErr[k] = msg
		}
	}
	for _, t := range a.templates {
		if ctx.Err() != nil {
			return
		}
		a.renderOne(ctx, t)
	}
}

// renderOne renders t and, when the file's content changes, replaces it and runs the command.
// A failed render leaves the file as it is.
func (a *Agent) renderOne(ctx context.Context, t *templateState) {
	dest := t.cfg.Destination
	r, err := render(ctx, t.tm, a.cache.Get)
	if err != nil {
		a.metrics.renderErrors.Inc()
		if msg := err.Error(); msg != t.lastErr {
			a.log.Warn("render failed, the file is kept as it is", "destination", dest, "err", msg)
			t.lastErr = msg
		}
		return
	}
	changed, err := writeIfChanged(dest, r.out, os.FileMode(t.cfg.Perms))
	if err != nil {
		a.metrics.renderErrors.Inc()
		if msg := err.Error(); msg != t.lastErr {
			a.log.Error("cannot write rendered file", "destination", dest, "err", msg)
			t.lastErr = msg
		}
		return
	}
	if t.lastErr != "" {
		a.log.Info("render works again", "destination", dest)
		t.lastErr = ""
	}
	if !changed {
		return
	}
	a.metrics.renders.Inc()
	a.log.Info("rendered file", "destination", dest, "bytes", len(r.out), "stale", r.stale)
	if len(t.cfg.Command) == 0 {
		return
	}
	a.metrics.commandRuns.Inc()
	start := time.Now()
	if err := runCommand(ctx, t.cfg.Command, time.Duration(t.cfg.CommandTimeout), a.cmdOut); err != nil {
		a.metrics.commandErrors.Inc()
		a.log.Error("on-change command failed", "destination", dest, "command", t.cfg.Command[0], "err", err)
		return
	}
	a.log.Info("on-change command ran", "destination", dest, "command", t.cfg.Command[0], "duration", time.Since(start).String())
}

// listen opens the local endpoint's listener: a Unix socket with the configured mode (a stale
// socket file left by a crash is replaced), or a loopback TCP address. cleanup removes the
// socket file.
func (a *Agent) listen() (net.Listener, func(), error) {
	addr := a.cfg.Listen.Address
	path, isUnix := strings.CutPrefix(addr, "unix:")
	if !isUnix {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("local endpoint: %w", err)
		}
		return l, func() {}, nil
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, nil, fmt.Errorf("local endpoint: %s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, nil, fmt.Errorf("local endpoint: %w", err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, nil, fmt.Errorf("local endpoint: %w", err)
	}
	if err := os.Chmod(path, os.FileMode(a.cfg.Listen.SocketMode)); err != nil {
		_ = l.Close()
		return nil, nil, fmt.Errorf("local endpoint: %w", err)
	}
	if ul, ok := l.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(true)
	}
	return l, func() {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			a.log.Warn("cannot remove the socket file", "path", path, "err", err)
		}
	}, nil
}
