package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/keyward/keyward/api/client"
)

// ErrConfig: the agent's configuration is incomplete or contradicts itself.
var ErrConfig = errors.New("invalid agent configuration")

// Defaults of Config.
const (
	DefaultRenderInterval = 5 * time.Second
	DefaultFetchTimeout   = 5 * time.Second
	DefaultCommandTimeout = 30 * time.Second
	DefaultFileMode       = 0o600
	DefaultSocketMode     = 0o600
)

// Config is everything `keyward agent` takes; its JSON form is the agent's config file.
type Config struct {
	// Addr lists the cluster's nodes, comma-separated ("https://10.0.0.1:8200,https://...").
	Addr string     `json:"addr"`
	TLS  TLSConfig  `json:"tls"`
	Auth AuthConfig `json:"auth"`
	// Cache: how long values are served before they are fetched again, and when serving
	// stale values during an outage raises the alert.
	Cache CacheConfig `json:"cache"`
	// RenderInterval is how often templates are rendered from the cache (a render that finds
	// fresh cached values makes no network call). Default 5s, at most the cache TTL.
	RenderInterval Duration `json:"render_interval"`
	// FetchTimeout bounds one fetch from the cluster (a local read waiting for a fetch during a
	// network partition waits at most this long before it gets the stale value). Default 5s.
	FetchTimeout Duration `json:"fetch_timeout"`
	// Secrets are served on the local endpoint and kept fresh; nothing else is served there.
	Secrets   []SecretConfig   `json:"secrets"`
	Templates []TemplateConfig `json:"templates"`
	Listen    ListenConfig     `json:"listen"`
	LogLevel  string           `json:"log_level"`  // debug, info, warn, error (default info)
	LogFormat string           `json:"log_format"` // text or json (default text)
}

// TLSConfig names the PEM files of the agent's TLS settings (see client.TLSFiles).
type TLSConfig struct {
	CAFile     string `json:"ca_file"`
	CertFile   string `json:"cert_file"`
	KeyFile    string `json:"key_file"`
	ServerName string `json:"server_name"`
}

// AuthConfig chooses how the agent authenticates: Method is "token" (TokenFile), "approle"
// (RoleID or RoleIDFile, and SecretIDFile), "jwt" (JWTFile, read on every login), "cert" (the
// TLS client certificate: no login) or "userpass" (Username and PasswordFile).
type AuthConfig struct {
	Method       string `json:"method"`
	TokenFile    string `json:"token_file"`
	RoleID       string `json:"role_id"`
	RoleIDFile   string `json:"role_id_file"`
	SecretIDFile string `json:"secret_id_file"`
	JWTFile      string `json:"jwt_file"`
	Username     string `json:"username"`
	PasswordFile string `json:"password_file"`
}

// CacheConfig tunes the agent's cache (client.CacheOptions).
type CacheConfig struct {
	TTL        Duration `json:"ttl"`
	StaleAlert Duration `json:"stale_alert"`
}

// SecretConfig names one secret version: the CURRENT one unless Version or State is set.
type SecretConfig struct {
	Path    string `json:"path"`
	Version uint64 `json:"version,omitempty"`
	State   string `json:"state,omitempty"`
}

// Selector returns the client selector of s.
func (s SecretConfig) Selector() client.Selector {
	return client.Selector{Version: s.Version, State: s.State}
}

// TemplateConfig renders a Go text/template (Source, a file, or Contents inline) to
// Destination. When the rendered bytes differ from the file's, the file is replaced atomically
// with mode Perms (default 0600) and Command, if any, runs (argv, no shell) within
// CommandTimeout (default 30s).
type TemplateConfig struct {
	Source         string   `json:"source"`
	Contents       string   `json:"contents"`
	Destination    string   `json:"destination"`
	Perms          FileMode `json:"perms"`
	Command        []string `json:"command"`
	CommandTimeout Duration `json:"command_timeout"`
}

// ListenConfig is the local endpoint: Address is "unix:/path/to/socket" or a loopback
// "127.0.0.1:port"; empty serves nothing. SocketMode (default 0600) is the socket file's
// mode. TokenFile, for TCP only, holds a token local callers must send as "Authorization:
// Bearer <token>".
type ListenConfig struct {
	Address    string   `json:"address"`
	SocketMode FileMode `json:"socket_mode"`
	TokenFile  string   `json:"token_file"`
}

// Duration is a time.Duration written as a Go duration string ("30s") in JSON.
type Duration time.Duration

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"30s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// FileMode is a permission mode written as an octal string ("0640") in JSON.
type FileMode os.FileMode

// UnmarshalJSON implements json.Unmarshaler.
func (m *FileMode) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a file mode is an octal string such as \"0600\": %w", err)
	}
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o777 {
		return fmt.Errorf("file mode %q is not an octal permission such as \"0600\"", s)
	}
	*m = FileMode(v)
	return nil
}

// MarshalJSON implements json.Marshaler.
func (m FileMode) MarshalJSON() ([]byte, error) { return json.Marshal(fmt.Sprintf("%04o", uint32(m))) }

// LoadConfig reads a JSON config file; unknown keys are an error.
func LoadConfig(file string) (*Config, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	var c Config
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrConfig, file, err)
	}
	return &c, nil
}

// setDefaults fills the unset settings.
func (c *Config) setDefaults() {
	if c.Cache.TTL <= 0 {
		c.Cache.TTL = Duration(client.DefaultCacheTTL)
	}
	if c.RenderInterval <= 0 {
		c.RenderInterval = Duration(min(DefaultRenderInterval, time.Duration(c.Cache.TTL)/4))
	}
	c.RenderInterval = min(c.RenderInterval, c.Cache.TTL)
	if c.FetchTimeout <= 0 {
		c.FetchTimeout = Duration(DefaultFetchTimeout)
	}
	for i := range c.Templates {
		if c.Templates[i].Perms == 0 {
			c.Templates[i].Perms = DefaultFileMode
		}
		if c.Templates[i].CommandTimeout <= 0 {
			c.Templates[i].CommandTimeout = Duration(DefaultCommandTimeout)
		}
	}
	if c.Listen.SocketMode == 0 {
		c.Listen.SocketMode = DefaultSocketMode
	}
}

// Validate checks c after filling the defaults.
func (c *Config) Validate() error {
	c.setDefaults()
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrConfig}, a...)...)
	}
	if strings.TrimSpace(c.Addr) == "" {
		return bad("addr names no cluster node")
	}
	switch c.Auth.Method {
	case "token":
		if c.Auth.TokenFile == "" {
			return bad("auth method token needs token_file")
		}
	case "approle":
		if (c.Auth.RoleID == "") == (c.Auth.RoleIDFile == "") || c.Auth.SecretIDFile == "" {
			return bad("auth method approle needs one of role_id and role_id_file, and secret_id_file")
		}
	case "jwt":
		if c.Auth.JWTFile == "" {
			return bad("auth method jwt needs jwt_file")
		}
	case "cert":
		if c.TLS.CertFile == "" || c.TLS.KeyFile == "" {
			return bad("auth method cert needs tls cert_file and key_file")
		}
	case "userpass":
		if c.Auth.Username == "" || c.Auth.PasswordFile == "" {
			return bad("auth method userpass needs username and password_file")
		}
	default:
		return bad("auth method %q is not token, approle, jwt, cert or userpass", c.Auth.Method)
	}
	if len(c.Secrets) == 0 && len(c.Templates) == 0 {
		return bad("no secrets and no templates: nothing to do")
	}
	for _, s := range c.Secrets {
		if s.Path == "" || (s.Version != 0 && s.State != "") {
			return bad("secret %q: a path, and at most one of version and state", s.Path)
		}
	}
	for _, t := range c.Templates {
		if (t.Source == "") == (t.Contents == "") {
			return bad("template for %q: exactly one of source and contents", t.Destination)
		}
		if t.Destination == "" {
			return bad("template %q has no destination", t.Source)
		}
		if len(t.Command) > 0 && t.Command[0] == "" {
			return bad("template for %q: the command's first word is empty", t.Destination)
		}
	}
	if c.Listen.Address != "" {
		if _, isUnix := strings.CutPrefix(c.Listen.Address, "unix:"); isUnix {
			if c.Listen.TokenFile != "" {
				return bad("listen: a Unix socket is protected by its file mode; token_file is for TCP")
			}
		} else if err := checkLoopback(c.Listen.Address); err != nil {
			return bad("listen: %v", err)
		}
	}
	return nil
}

// checkLoopback accepts host:port only when host is a loopback address or "localhost".
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%q is not a loopback address: the agent serves secrets to local processes only", addr)
}

// clientOptions returns the client options of c's TLS and auth settings.
func (c *Config) clientOptions() ([]client.Option, error) {
	var opts []client.Option
	if c.TLS != (TLSConfig{}) {
		cfg, err := client.TLSFiles{CAFile: c.TLS.CAFile, CertFile: c.TLS.CertFile, KeyFile: c.TLS.KeyFile,
			ServerName: c.TLS.ServerName}.Config()
		if err != nil {
			return nil, err
		}
		opts = append(opts, client.WithTLSConfig(cfg))
	}
	a := c.Auth
	switch a.Method {
	case "token":
		opts = append(opts, client.WithAuth(client.TokenFileAuth{Path: a.TokenFile}))
	case "approle":
		opts = append(opts, client.WithAuth(client.AppRoleAuth{RoleID: a.RoleID, RoleIDFile: a.RoleIDFile, SecretIDFile: a.SecretIDFile}))
	case "jwt":
		opts = append(opts, client.WithAuth(client.JWTFile(a.JWTFile)))
	case "userpass":
		opts = append(opts, client.WithAuth(client.UserpassAuth{Username: a.Username, PasswordFile: a.PasswordFile}))
	}
	return opts, nil
}
