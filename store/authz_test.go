package store

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/keyward/keyward/fsm"
)

func TestMatchPattern(t *testing.T) {
	cases := []struct {
		pattern, path string
		want          bool
	}{
		{"prod/db", "prod/db", true},
		{"prod/db", "prod/db2", false},
		{"prod/*", "prod/db", true},
		{"prod/*", "prod/a/b/c", true},
		{"prod/*", "prod", false},
		{"prod/*", "production/db", false},
		{"*", "anything/at/all", true},
		{"prod/+/db", "prod/eu/db", true},
		{"prod/+/db", "prod/eu/x/db", false},
		{"prod/+/db", "prod/db", false},
		{"+/+", "a/b", true},
		{"+/+", "a/b/c", false},
		{"prod/+/*", "prod/eu/db/x", true},
		{"prod/+/*", "prod/eu", false},
	}
	for _, c := range cases {
		if got := MatchPattern(c.pattern, c.path); got != c.want {
			t.Errorf("MatchPattern(%q, %q) = %v, want %v", c.pattern, c.path, got, c.want)
		}
	}
	for _, bad := range []string{"", "a//b", "a/*/b", "a/**", "a/../b", "/a"} {
		if err := ValidatePattern(bad); err == nil {
			t.Errorf("ValidatePattern(%q) accepted", bad)
		}
	}
	for _, good := range []string{"a", "a/*", "*", "a/+/b", "+"} {
		if err := ValidatePattern(good); err != nil {
			t.Errorf("ValidatePattern(%q) = %v", good, err)
		}
	}
}

// TestAuthorizationTable: principal types × actions × grant kinds × expiry, role membership,
// and admins — deny by default.
func TestAuthorizationTable(t *testing.T) {
	f := fsm.New(nil)
	idx := uint64(0)
	apply := func(ct fsm.CommandType, p any) {
		t.Helper()
		idx++
		res, err := f.ApplyCommand(idx, fsm.MustEncode(ct, p))
		if err != nil || res.Err != nil {
			t.Fatalf("apply %d: %v %v", ct, err, res)
		}
	}
	const now = int64(1_000_000)
	apply(fsm.CmdPutVersion, fsm.PutVersion{SecretID: "sid-db", Path: "prod/eu/db", VersionID: "v1",
		Ciphertext: []byte("c"), WrappedKey: []byte("k"), At: 1})
	grants := []fsm.Policy{
		{ID: "g1", PathPattern: "prod/*", PrincipalType: fsm.PrincipalService, PrincipalID: "api", Actions: []fsm.Action{fsm.ActionRead}},
		{ID: "g2", PathPattern: "prod/+/db", PrincipalType: fsm.PrincipalUser, PrincipalID: "ann", Actions: []fsm.Action{fsm.ActionWrite, fsm.ActionRead}},
		{ID: "g3", SecretID: "sid-db", PrincipalType: fsm.PrincipalService, PrincipalID: "rotator", Actions: []fsm.Action{fsm.ActionRotate}},
		{ID: "g4", PathPattern: "prod/eu/db", PrincipalType: fsm.PrincipalRole, PrincipalID: "dba", Actions: []fsm.Action{fsm.ActionDelete}},
		{ID: "g5", PathPattern: "*", PrincipalType: fsm.PrincipalUser, PrincipalID: "temp", Actions: []fsm.Action{fsm.ActionRead}, ExpiresAt: now - 1},
		{ID: "g6", PathPattern: "*", PrincipalType: fsm.PrincipalUser, PrincipalID: "later", Actions: []fsm.Action{fsm.ActionRead}, ExpiresAt: now + 1},
	}
	for _, g := range grants {
		apply(fsm.CmdPutPolicy, fsm.PutPolicy{Policy: g})
	}
	st := f.State()
	sec, _ := st.SecretByPath("prod/eu/db")
	svc := func(id string, roles ...string) Caller {
		return Caller{Type: fsm.PrincipalService, ID: id, Roles: roles}
	}
	user := func(id string, roles ...string) Caller { return Caller{Type: fsm.PrincipalUser, ID: id, Roles: roles} }
	cases := []struct {
		name   string
		c      Caller
		action fsm.Action
		path   string
		want   bool
	}{
		{"service read under prefix", svc("api"), fsm.ActionRead, "prod/eu/db", true},
		{"service read outside prefix", svc("api"), fsm.ActionRead, "dev/db", false},
		{"service write not granted", svc("api"), fsm.ActionWrite, "prod/eu/db", false},
		{"same id, other type", user("api"), fsm.ActionRead, "prod/eu/db", false},
		{"user + segment write", user("ann"), fsm.ActionWrite, "prod/us/db", true},
		{"user + segment two levels", user("ann"), fsm.ActionWrite, "prod/us/x/db", false},
		{"secret-id grant rotate", svc("rotator"), fsm.ActionRotate, "prod/eu/db", true},
		{"secret-id grant other action", svc("rotator"), fsm.ActionRead, "prod/eu/db", false},
		{"role member delete", user("bob", "dba"), fsm.ActionDelete, "prod/eu/db", true},
		{"role member other path", user("bob", "dba"), fsm.ActionDelete, "prod/us/db", false},
		{"not a member", user("bob"), fsm.ActionDelete, "prod/eu/db", false},
		{"expired grant", user("temp"), fsm.ActionRead, "prod/eu/db", false},
		{"not yet expired grant", user("later"), fsm.ActionRead, "prod/eu/db", true},
		{"unknown principal", svc("nobody"), fsm.ActionRead, "prod/eu/db", false},
	}
	for _, c := range cases {
		s := sec
		if c.path != "prod/eu/db" {
			s = nil
		}
		if got := allowed(st, c.c, c.action, c.path, s, now); got != c.want {
			t.Errorf("%s: allowed = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestServiceEnforcesGrants: through the service, a non-admin is refused without a grant
// (ErrForbidden), allowed with one, lists only what it may read, and cannot administer.
func TestServiceEnforcesGrants(t *testing.T) {
	s := newService(t)
	admin := adminCtx()
	for _, p := range []string{"team/a", "team/b", "other/c"} {
		if _, err := s.Put(admin, PutInput{Path: p, Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	svc := WithCaller(context.Background(), Caller{Type: fsm.PrincipalService, ID: "app", Method: "token"})
	if _, err := s.Get(svc, "team/a", Selector{}, ReadOptions{}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("read without grant: %v", err)
	}
	if _, err := s.Grant(admin, GrantInput{PrincipalType: fsm.PrincipalService, PrincipalID: "app",
		Actions: []fsm.Action{fsm.ActionRead}, PathPattern: "team/*"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(svc, "team/a", Selector{}, ReadOptions{}); err != nil {
		t.Fatalf("read with grant: %v", err)
	}
	if _, err := s.Put(svc, PutInput{Path: "team/a", Value: []byte("x")}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("write with a read grant: %v", err)
	}
	list, err := s.List(svc, "", "", 10, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(paths(list.Secrets)); got != "[team/a team/b]" {
		t.Fatalf("listing shows %s", got)
	}
	if _, err := s.Grant(svc, GrantInput{PrincipalType: fsm.PrincipalService, PrincipalID: "app",
		Actions: []fsm.Action{fsm.ActionWrite}, PathPattern: "*"}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("non-admin granted itself: %v", err)
	}
	anon := context.Background()
	if _, err := s.Get(anon, "team/a", Selector{}, ReadOptions{}); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("no caller: %v", err)
	}
}

func paths(secs []*fsm.Secret) []string {
	var out []string
	for _, s := range secs {
		out = append(out, s.Path)
	}
	return out
}
