package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrEmptyCredential: a credential file or source gave nothing (an empty token, secret id or
// JWT).
var ErrEmptyCredential = errors.New("empty credential")

// loginTimeout bounds one login or renewal started on behalf of a request; it runs detached
// from that request's context so that a caller giving up does not fail the others waiting.
const loginTimeout = 30 * time.Second

// loginRetry is how long a client holding a still-valid token waits before trying again a
// refresh that failed (for instance while the cluster is unavailable).
const loginRetry = 2 * time.Second

// Auth obtains a token for a Client; WithAuth installs one. Login is called lazily before the
// first request, again when two thirds of the token's lifetime have passed (after trying a
// renewal first), and once when the server refuses the token with 401 unauthenticated.
// Implementations must be safe for concurrent use; the Client never runs two logins at once.
type Auth interface {
	Login(ctx context.Context, c *Client) (*LoginResponse, error)
}

// AppRoleAuth logs in with an AppRole. The role id comes from RoleID, or from RoleIDFile when
// that is set; the secret id from SecretID, or from SecretIDFile, which is read again on every
// login so a deployment tool can replace it.
type AppRoleAuth struct {
	RoleID, RoleIDFile     string
	SecretID, SecretIDFile string
}

// Login implements Auth.
func (a AppRoleAuth) Login(ctx context.Context, c *Client) (*LoginResponse, error) {
	roleID, err := valueOrFile(a.RoleID, a.RoleIDFile, "role id")
	if err != nil {
		return nil, err
	}
	secretID, err := valueOrFile(a.SecretID, a.SecretIDFile, "secret id")
	if err != nil {
		return nil, err
	}
	return c.LoginAppRole(ctx, roleID, secretID)
}

// JWTAuth logs in with a JWT that Source returns; Source is called on every login, so it can
// hand out a freshly issued token each time.
type JWTAuth struct {
	Source func(ctx context.Context) (string, error)
}

// JWTFile is a JWTAuth reading the JWT from file on every login, as a Kubernetes projected
// service account token is rotated in place.
func JWTFile(file string) JWTAuth {
	return JWTAuth{Source: func(context.Context) (string, error) { return readCredential(file, "JWT") }}
}

// Login implements Auth.
func (a JWTAuth) Login(ctx context.Context, c *Client) (*LoginResponse, error) {
	if a.Source == nil {
		return nil, fmt.Errorf("JWT: %w: no source", ErrEmptyCredential)
	}
	jwt, err := a.Source(ctx)
	if err != nil {
		return nil, fmt.Errorf("JWT: %w", err)
	}
	if jwt = strings.TrimSpace(jwt); jwt == "" {
		return nil, fmt.Errorf("JWT: %w", ErrEmptyCredential)
	}
	return c.LoginJWT(ctx, jwt)
}

// UserpassAuth logs a user in with a password, from Password or from PasswordFile.
type UserpassAuth struct {
	Username               string
	Password, PasswordFile string
}

// Login implements Auth.
func (a UserpassAuth) Login(ctx context.Context, c *Client) (*LoginResponse, error) {
	pw, err := valueOrFile(a.Password, a.PasswordFile, "password")
	if err != nil {
		return nil, err
	}
	return c.LoginUserpass(ctx, a.Username, pw)
}

// TokenFileAuth uses the token written in a file by something else (an operator, another
// agent). The file is read on the first request and again after the server refuses the token,
// so a replaced token is picked up; the client never renews it.
type TokenFileAuth struct {
	Path string
}

// Login implements Auth.
func (a TokenFileAuth) Login(context.Context, *Client) (*LoginResponse, error) {
	tok, err := readCredential(a.Path, "token")
	if err != nil {
		return nil, err
	}
	return &LoginResponse{Token: tok}, nil
}

// valueOrFile returns v, or the trimmed content of file when file is set.
func valueOrFile(v, file, what string) (string, error) {
	if file != "" {
		return readCredential(file, what)
	}
	if v = strings.TrimSpace(v); v == "" {
		return "", fmt.Errorf("%s: %w", what, ErrEmptyCredential)
	}
	return v, nil
}

// readCredential returns the content of file without surrounding white space.
func readCredential(file, what string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s file: %w", what, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s file %s: %w", what, file, ErrEmptyCredential)
	}
	return s, nil
}

// WithAuth makes the client obtain its token through a (see Auth) instead of a fixed one; it
// takes precedence over WithToken and SetToken.
func WithAuth(a Auth) Option {
	return func(c *Client) { c.auth = &authState{method: a, now: time.Now} }
}

// AuthStats counts what a Client configured WithAuth did to keep a token.
type AuthStats struct {
	Logins, LoginFailures, Renewals uint64
	// ExpiresAt is when the token held now expires; zero when none is held or it does not
	// expire.
	ExpiresAt time.Time
}

// AuthStats returns the login counters; all zero without WithAuth.
func (c *Client) AuthStats() AuthStats {
	a := c.auth
	if a == nil {
		return AuthStats{}
	}
	a.mu.Lock()
	exp := a.expires
	a.mu.Unlock()
	return AuthStats{Logins: a.logins.Load(), LoginFailures: a.failures.Load(), Renewals: a.renewals.Load(), ExpiresAt: exp}
}

// authState is the token a Client obtained through its Auth, and the refresh in progress.
type authState struct {
	method Auth
	now    func() time.Time

	mu        sync.Mutex
	tok       string
	lifetime  time.Duration // of tok when it was obtained by a login; 0: does not expire
	expires   time.Time     // zero: does not expire
	refreshAt time.Time     // zero: never refreshed ahead
	flight    *authFlight   // the refresh in progress, if any

	logins, failures, renewals atomic.Uint64
}

// authFlight is one refresh in progress; waiters block on done.
type authFlight struct {
	done chan struct{}
	tok  string
	err  error
}

// token returns the token to send. A token that is due for refresh but still valid is returned
// at once while one refresh runs in the background; without a valid token the caller waits
// for the refresh (one at a time, shared by every caller).
func (a *authState) token(ctx context.Context, c *Client) (string, error) {
	a.mu.Lock()
	now := a.now()
	if a.tok != "" && (a.refreshAt.IsZero() || now.Before(a.refreshAt)) {
		tok := a.tok
		a.mu.Unlock()
		return tok, nil
	}
	valid := a.tok != "" && (a.expires.IsZero() || now.Before(a.expires))
	f := a.flight
	if f == nil {
		f = &authFlight{done: make(chan struct{})}
		a.flight = f
		go a.refresh(context.WithoutCancel(ctx), c, f)
	}
	tok := a.tok
	a.mu.Unlock()
	if valid {
		return tok, nil
	}
	select {
	case <-f.done:
		return f.tok, f.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// invalidate forgets tok after the server refused it, unless a newer token replaced it already.
func (a *authState) invalidate(tok string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.tok == tok {
		a.tok, a.expires, a.refreshAt = "", time.Time{}, time.Time{}
	}
}

// refresh renews the current token when it can, and logs in otherwise; it publishes the
// outcome on f.
func (a *authState) refresh(ctx context.Context, c *Client, f *authFlight) {
	ctx, cancel := context.WithTimeout(ctx, loginTimeout)
	defer cancel()
	a.mu.Lock()
	old, lifetime, expires := a.tok, a.lifetime, a.expires
	a.mu.Unlock()

	var tok string
	var exp time.Time
	var err error
	renewed := false
	if old != "" && !expires.IsZero() && lifetime > 0 {
		var l *LoginResponse
		if l, err = c.renewWith(ctx, old); err == nil && l.ExpiresAt.Sub(a.now()) >= lifetime/2 {
			tok, exp, renewed = old, l.ExpiresAt, true
		}
	}
	if !renewed {
		var l *LoginResponse
		if l, err = a.method.Login(ctx, c); err == nil && (l == nil || l.Token == "") {
			err = fmt.Errorf("login: %w: no token in the answer", ErrMalformedResponse)
		}
		if err == nil {
			tok, exp = l.Token, l.ExpiresAt
		}
	}

	now := a.now()
	a.mu.Lock()
	switch {
	case err == nil:
		if renewed {
			a.renewals.Add(1)
		} else {
			a.logins.Add(1)
			a.lifetime = 0
			if !exp.IsZero() {
				a.lifetime = exp.Sub(now)
			}
		}
		a.tok, a.expires, a.refreshAt = tok, exp, time.Time{}
		if !exp.IsZero() {
			a.refreshAt = now.Add(exp.Sub(now) * 2 / 3)
		}
	default:
		a.failures.Add(1)
		switch {
		case a.tok == "":
		case a.expires.IsZero():
			a.refreshAt = now.Add(loginRetry)
		case now.Before(a.expires):
			// Keep using the token while it lasts; try again a little later.
			a.refreshAt = now.Add(min(loginRetry, a.expires.Sub(now)/2))
		}
	}
	a.flight = nil
	a.mu.Unlock()
	f.tok, f.err = tok, err
	if err != nil {
		f.err = fmt.Errorf("login: %w", err)
	}
	close(f.done)
}

// renewWith renews tok (not necessarily the token requests use now).
func (c *Client) renewWith(ctx context.Context, tok string) (*LoginResponse, error) {
	var out LoginResponse
	k := call{method: http.MethodPost, endpoint: "/v1/auth/token/renew", noPath: true, auth: authExplicit, token: tok}
	if _, _, err := c.do(ctx, k, &out); err != nil {
		return nil, err
	}
	if out.ExpiresAt.IsZero() {
		return nil, fmt.Errorf("renew: %w: no expires_at", ErrMalformedResponse)
	}
	return &out, nil
}
