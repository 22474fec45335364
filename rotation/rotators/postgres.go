package rotators

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyward/keyward/rotation"
)

// PostgresSettings configure the postgres rotator (alternating users). Connection is the path
// of another secret holding the admin connection: a postgres:// URL, or a JSON object
// {host, port, database, username, password, sslmode}. Roles are the two login roles that
// take turns; both must exist and the admin must be allowed to ALTER them.
type PostgresSettings struct {
	Connection     string   `json:"connection"`
	Roles          []string `json:"roles"`
	PasswordLength int      `json:"password_length,omitempty"` // default 32
	ConnectTimeout string   `json:"connect_timeout,omitempty"` // default 10s
}

// PostgresValue is the value of a secret the postgres rotator manages.
type PostgresValue struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// adminConn is the JSON form of the admin connection secret.
type adminConn struct {
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Database string `json:"database"`
	Username string `json:"username"`
	Password string `json:"password"`
	SSLMode  string `json:"sslmode"`
}

// Postgres rotates the password of a PostgreSQL login by alternating between two roles: each
// rotation sets a new password on the role not in use and enables its LOGIN, and only after
// the grace period disables LOGIN of the role the old value named. Old and new credentials
// therefore both work while clients move over.
type Postgres struct {
	s       PostgresSettings
	timeout time.Duration
}

// NewPostgres is the rotation.Factory of the "postgres" rotator.
func NewPostgres(raw json.RawMessage) (rotation.Rotator, []string, error) {
	var s PostgresSettings
	if err := decodeStrict(raw, &s); err != nil {
		return nil, nil, err
	}
	bad := func(format string, a ...any) (rotation.Rotator, []string, error) {
		return nil, nil, fmt.Errorf("%w: postgres: %s", rotation.ErrInvalidPolicy, fmt.Sprintf(format, a...))
	}
	if s.Connection == "" {
		return bad("connection (the path of the admin connection secret) is required")
	}
	if len(s.Roles) != 2 || s.Roles[0] == s.Roles[1] {
		return bad("roles must name two different login roles")
	}
	for _, r := range s.Roles {
		if r == "" || len(r) > 63 {
			return bad("role names are 1..63 bytes")
		}
	}
	if s.PasswordLength == 0 {
		s.PasswordLength = 32
	}
	if s.PasswordLength < 16 || s.PasswordLength > 128 {
		return bad("password_length must be 16..128")
	}
	p := &Postgres{s: s, timeout: 10 * time.Second}
	if s.ConnectTimeout != "" {
		d, err := time.ParseDuration(s.ConnectTimeout)
		if err != nil || d <= 0 {
			return bad("connect_timeout %q is not a positive duration", s.ConnectTimeout)
		}
		p.timeout = d
	}
	return p, []string{s.Connection}, nil
}

// other returns the role that is not name (the first role when name is neither).
func (p *Postgres) other(name string) string {
	if name == p.s.Roles[0] {
		return p.s.Roles[1]
	}
	return p.s.Roles[0]
}

func parseValue(b []byte) (PostgresValue, error) {
	var v PostgresValue
	if err := json.Unmarshal(b, &v); err != nil || v.Username == "" {
		return v, errors.New("the value is not a JSON object with username and password")
	}
	return v, nil
}

// Generate picks the role not in use and a new password for it.
func (p *Postgres) Generate(_ context.Context, j *rotation.Job) ([]byte, error) {
	next := p.s.Roles[0]
	if cur, err := parseValue(j.Current); err == nil {
		next = p.other(cur.Username)
	}
	pw, err := randomString(p.s.PasswordLength, alphabets["alnum"])
	if err != nil {
		return nil, err
	}
	defer clear(pw)
	return json.Marshal(PostgresValue{Username: next, Password: string(pw)})
}

// connConfig builds the admin connection from the referenced secret.
func (p *Postgres) connConfig(ctx context.Context, j *rotation.Job) (*pgx.ConnConfig, error) {
	raw, err := j.Refs.Value(ctx, p.s.Connection)
	if err != nil {
		return nil, fmt.Errorf("admin connection secret %q: %w", p.s.Connection, err)
	}
	defer clear(raw)
	s := strings.TrimSpace(string(raw))
	var cfg *pgx.ConnConfig
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		if cfg, err = pgx.ParseConfig(s); err != nil {
			return nil, fmt.Errorf("admin connection secret %q is not a valid URL", p.s.Connection)
		}
	} else {
		var a adminConn
		if err := json.Unmarshal(raw, &a); err != nil || a.Host == "" || a.Username == "" {
			return nil, fmt.Errorf("admin connection secret %q is neither a postgres:// URL nor JSON with host and username", p.s.Connection)
		}
		if a.Port == 0 {
			a.Port = 5432
		}
		if a.SSLMode == "" {
			a.SSLMode = "prefer"
		}
		dsn := "host=" + quoteDSN(a.Host) + " port=" + strconv.Itoa(a.Port) + " sslmode=" + quoteDSN(a.SSLMode)
		if a.Database != "" {
			dsn += " dbname=" + quoteDSN(a.Database)
		}
		if cfg, err = pgx.ParseConfig(dsn); err != nil {
			return nil, fmt.Errorf("admin connection secret %q: bad host, port or sslmode", p.s.Connection)
		}
		cfg.User, cfg.Password = a.Username, a.Password
	}
	cfg.ConnectTimeout = p.timeout
	cfg.RuntimeParams["application_name"] = "keyward-rotation"
	return cfg, nil
}

func quoteDSN(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// admin runs fn on an admin connection.
func (p *Postgres) admin(ctx context.Context, j *rotation.Job, fn func(*pgx.Conn) error) error {
	cfg, err := p.connConfig(ctx, j)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*p.timeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect as admin: %w", pgError(err))
	}
	defer conn.Close(context.Background())
	return fn(conn)
}

// pgError keeps what a PostgreSQL error says without anything the client library might echo
// from a statement.
func pgError(err error) error {
	var pe interface{ SQLState() string }
	if errors.As(err, &pe) {
		return fmt.Errorf("postgres error %s: %w", pe.SQLState(), err)
	}
	return err
}

// Apply sets the new password on the new value's role (as a SCRAM verifier computed here, so
// the password itself never travels in SQL) and enables its LOGIN.
func (p *Postgres) Apply(ctx context.Context, j *rotation.Job, value []byte) error {
	v, err := parseValue(value)
	if err != nil {
		return err
	}
	verifier, err := scramVerifier(v.Password)
	if err != nil {
		return err
	}
	return p.admin(ctx, j, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, "ALTER ROLE "+pgx.Identifier{v.Username}.Sanitize()+" WITH LOGIN PASSWORD '"+verifier+"'")
		if err != nil {
			return fmt.Errorf("set the password of role %q: %w", v.Username, pgError(err))
		}
		return nil
	})
}

// Test logs in with the new value and runs a query.
func (p *Postgres) Test(ctx context.Context, j *rotation.Job, value []byte) error {
	v, err := parseValue(value)
	if err != nil {
		return err
	}
	cfg, err := p.connConfig(ctx, j)
	if err != nil {
		return err
	}
	cfg.User, cfg.Password = v.Username, v.Password
	ctx, cancel := context.WithTimeout(ctx, 3*p.timeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("log in as %q with the new password: %w", v.Username, pgError(err))
	}
	defer conn.Close(context.Background())
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("query as %q: %w", v.Username, pgError(err))
	}
	return nil
}

// Finish does nothing: promotion is keyward's own.
func (p *Postgres) Finish(context.Context, *rotation.Job, []byte) error { return nil }

// Revoke disables LOGIN of the old value's role (the role the current value does not use).
func (p *Postgres) Revoke(ctx context.Context, j *rotation.Job, old, current []byte) error {
	cur, err := parseValue(current)
	if err != nil {
		return err
	}
	role := p.other(cur.Username)
	if o, err := parseValue(old); err == nil && o.Username != cur.Username {
		role = o.Username
	}
	if role == cur.Username {
		return nil
	}
	return p.nologin(ctx, j, role)
}

// Discard disables LOGIN of a pending value's role unless it is the role in use.
func (p *Postgres) Discard(ctx context.Context, j *rotation.Job, pending []byte) error {
	v, err := parseValue(pending)
	if err != nil {
		return err
	}
	var inUse string
	if cur, err := parseValue(j.Current); err == nil {
		inUse = cur.Username
	}
	if v.Username == inUse {
		return nil
	}
	return p.nologin(ctx, j, v.Username)
}

func (p *Postgres) nologin(ctx context.Context, j *rotation.Job, role string) error {
	return p.admin(ctx, j, func(c *pgx.Conn) error {
		if _, err := c.Exec(ctx, "ALTER ROLE "+pgx.Identifier{role}.Sanitize()+" WITH NOLOGIN"); err != nil {
			return fmt.Errorf("disable login of role %q: %w", role, pgError(err))
		}
		return nil
	})
}

// scramVerifier computes PostgreSQL's SCRAM-SHA-256 password verifier (RFC 5802, RFC 7677):
// SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>.
func scramVerifier(password string) (string, error) {
	const iterations = 4096
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return "", err
	}
	defer clear(salted)
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	clientKey := mac(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	serverKey := mac(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, b64(salt), b64(stored[:]), b64(serverKey)), nil
}
