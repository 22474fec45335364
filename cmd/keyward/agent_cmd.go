package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/keyward/keyward/api/agent"
)

// agentCmd is `keyward agent`: the settings come from --config (JSON, see api/agent.Config);
// flags given on the command line override the file's.
func (x cli) agentCmd(args []string) int {
	fs := flag.NewFlagSet("keyward agent", flag.ContinueOnError)
	fs.SetOutput(x.stderr)
	var cfg agent.Config
	file := fs.String("config", "", "JSON config file (addr, tls, auth, cache, secrets, templates, listen...)")
	fs.StringVar(&cfg.Addr, "addr", "", "comma-separated cluster node URLs")
	fs.StringVar(&cfg.TLS.CAFile, "ca-cert", "", "PEM file of the CA that signed the nodes' certificates")
	fs.StringVar(&cfg.TLS.CertFile, "client-cert", "", "PEM client certificate (mutual TLS; reloaded when it changes)")
	fs.StringVar(&cfg.TLS.KeyFile, "client-key", "", "PEM key of the client certificate")
	fs.StringVar(&cfg.Auth.Method, "auth", "", "token, approle, jwt, cert or userpass")
	fs.StringVar(&cfg.Auth.TokenFile, "token-file", "", "auth token: file holding the token")
	fs.StringVar(&cfg.Auth.RoleID, "role-id", "", "auth approle: the role id")
	fs.StringVar(&cfg.Auth.RoleIDFile, "role-id-file", "", "auth approle: file holding the role id")
	fs.StringVar(&cfg.Auth.SecretIDFile, "secret-id-file", "", "auth approle: file holding the secret id (read at each login)")
	fs.StringVar(&cfg.Auth.JWTFile, "jwt-file", "", "auth jwt: file holding the JWT (read at each login)")
	fs.StringVar(&cfg.Auth.Username, "username", "", "auth userpass: the user")
	fs.StringVar(&cfg.Auth.PasswordFile, "password-file", "", "auth userpass: file holding the password")
	fs.StringVar(&cfg.Listen.Address, "listen", "", "local endpoint: unix:/path/to.sock or a loopback host:port")
	fs.StringVar(&cfg.Listen.TokenFile, "listen-token-file", "", "TCP endpoint: file holding the token local callers must send")
	ttl := fs.Duration("ttl", 0, "cache TTL (default 60s)")
	interval := fs.Duration("render-interval", 0, "how often templates are rendered from the cache (default min(5s, TTL/4))")
	fs.StringVar(&cfg.LogLevel, "log-level", "", "debug, info, warn or error (default info)")
	fs.StringVar(&cfg.LogFormat, "log-format", "", "text or json (default text)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(x.stderr, "error: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	flags := cfg
	if *file != "" {
		fc, err := agent.LoadConfig(*file)
		if err != nil {
			fmt.Fprintf(x.stderr, "error: %v\n", err)
			return 2
		}
		cfg = *fc
	}
	overrideSet(fs, &cfg, &flags)
	if *ttl > 0 {
		cfg.Cache.TTL = agent.Duration(*ttl)
	}
	if *interval > 0 {
		cfg.RenderInterval = agent.Duration(*interval)
	}
	log, err := newLogger(x.stderr, cmp.Or(cfg.LogLevel, "info"), cmp.Or(cfg.LogFormat, "text"))
	if err != nil {
		fmt.Fprintf(x.stderr, "error: %v\n", err)
		return 2
	}
	a, err := agent.New(&cfg, log, x.stderr)
	if err != nil {
		fmt.Fprintf(x.stderr, "error: %v\n", err)
		if errors.Is(err, agent.ErrConfig) {
			return 2
		}
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := a.Run(ctx); err != nil {
		log.Error("keyward agent failed", "err", err)
		return 1
	}
	return 0
}

// overrideSet copies into cfg the string settings whose flags were given on the command line.
func overrideSet(fs *flag.FlagSet, cfg, flags *agent.Config) {
	fields := map[string][2]*string{
		"addr": {&cfg.Addr, &flags.Addr}, "ca-cert": {&cfg.TLS.CAFile, &flags.TLS.CAFile},
		"client-cert": {&cfg.TLS.CertFile, &flags.TLS.CertFile}, "client-key": {&cfg.TLS.KeyFile, &flags.TLS.KeyFile},
		"auth": {&cfg.Auth.Method, &flags.Auth.Method}, "token-file": {&cfg.Auth.TokenFile, &flags.Auth.TokenFile},
		"role-id": {&cfg.Auth.RoleID, &flags.Auth.RoleID}, "role-id-file": {&cfg.Auth.RoleIDFile, &flags.Auth.RoleIDFile},
		"secret-id-file": {&cfg.Auth.SecretIDFile, &flags.Auth.SecretIDFile}, "jwt-file": {&cfg.Auth.JWTFile, &flags.Auth.JWTFile},
		"username": {&cfg.Auth.Username, &flags.Auth.Username}, "password-file": {&cfg.Auth.PasswordFile, &flags.Auth.PasswordFile},
		"listen": {&cfg.Listen.Address, &flags.Listen.Address}, "listen-token-file": {&cfg.Listen.TokenFile, &flags.Listen.TokenFile},
		"log-level": {&cfg.LogLevel, &flags.LogLevel}, "log-format": {&cfg.LogFormat, &flags.LogFormat},
	}
	fs.Visit(func(f *flag.Flag) {
		if p, ok := fields[f.Name]; ok {
			*p[0] = *p[1]
		}
	})
}
