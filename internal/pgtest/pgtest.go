// Package pgtest starts a throwaway PostgreSQL server for tests: initdb in a temporary
// directory, postgres on a free loopback port, stopped and removed when the test ends.
// PostgreSQL refuses to run as root, so as root the server runs as the "postgres" system user
// (scripts/test-deps.sh installs the Debian package, which creates it).
package pgtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is a running PostgreSQL server.
type Server struct {
	Host     string
	Port     int
	Admin    string // superuser name
	Password string // superuser password
	Database string
	dir      string
	bin      string
	asUser   string // run commands as this user ("" = the current one)
}

// URL is the superuser's connection URL.
func (s *Server) URL() string { return s.URLFor(s.Admin, s.Password) }

// URLFor is a connection URL for another login.
func (s *Server) URLFor(user, password string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(user, password),
		Host: net.JoinHostPort(s.Host, strconv.Itoa(s.Port)), Path: "/" + s.Database, RawQuery: "sslmode=disable"}
	return u.String()
}

// Exec runs SQL statements as the superuser.
func (s *Server) Exec(t testing.TB, sql ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL())
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(context.Background())
	for _, q := range sql {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("pgtest: %s: %v", q, err)
		}
	}
}

// binDir finds the directory of initdb and pg_ctl: PATH, then the Debian layout
// /usr/lib/postgresql/<version>/bin (newest version).
func binDir() string {
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p)
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
			return d
		}
	}
	return ""
}

// Start runs a new server for the test. Without PostgreSQL it skips the test when not root
// (nothing can be installed) and fails it as root (`make test` installs PostgreSQL).
func Start(t testing.TB) *Server {
	t.Helper()
	bin := binDir()
	root := os.Geteuid() == 0
	if bin == "" {
		if !root {
			t.Skip("PostgreSQL is not installed (scripts/test-deps.sh installs it as root)")
		}
		t.Fatal("PostgreSQL is not installed: run scripts/test-deps.sh")
	}
	s := &Server{Host: "127.0.0.1", Admin: "keyward_admin", Database: "postgres", bin: bin}
	pw := make([]byte, 16)
	_, _ = rand.Read(pw)
	s.Password = hex.EncodeToString(pw)
	dir, err := os.MkdirTemp("", "keyward-pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	s.dir = dir
	t.Cleanup(func() { os.RemoveAll(dir) })
	if root {
		s.asUser = "postgres"
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("pgtest: running as root needs the postgres system user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	pwfile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwfile, []byte(s.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if root {
		u, _ := user.Lookup("postgres")
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		_ = os.Chown(pwfile, uid, gid)
	}
	data := filepath.Join(dir, "data")
	s.run(t, filepath.Join(bin, "initdb"), "-D", data, "-U", s.Admin, "--pwfile", pwfile, "-E", "UTF8",
		"--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "--no-sync", "--no-instructions")
	os.Remove(pwfile)

	for attempt := 0; ; attempt++ {
		s.Port = freePort(t)
		opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
			s.Port, dir)
		out, err := s.cmd(filepath.Join(bin, "pg_ctl"), "-D", data, "-l", filepath.Join(dir, "log"), "-o", opts, "-w", "-t", "60", "start").CombinedOutput()
		if err == nil {
			break
		}
		if attempt == 2 {
			logs, _ := os.ReadFile(filepath.Join(dir, "log"))
			t.Fatalf("pgtest: pg_ctl start: %v\n%s\n%s", err, out, logs)
		}
	}
	t.Cleanup(func() {
		_ = s.cmd(filepath.Join(bin, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop").Run()
	})
	return s
}

// Logs returns the server log.
func (s *Server) Logs() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "log"))
	return string(b)
}

func (s *Server) cmd(name string, args ...string) *exec.Cmd {
	var c *exec.Cmd
	if s.asUser != "" {
		c = exec.Command("runuser", append([]string{"-u", s.asUser, "--", name}, args...)...)
	} else {
		c = exec.Command(name, args...)
	}
	c.Dir = s.dir
	c.Env = append(os.Environ(), "LC_ALL=C")
	return c
}

func (s *Server) run(t testing.TB, name string, args ...string) {
	t.Helper()
	var out bytes.Buffer
	c := s.cmd(name, args...)
	c.Stdout, c.Stderr = &out, &out
	if err := c.Run(); err != nil {
		t.Fatalf("pgtest: %s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out.String())
	}
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
