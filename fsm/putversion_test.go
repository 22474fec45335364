package fsm_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/keyward/keyward/fsm"
)

func TestPutVersionCreate(t *testing.T) {
	f := fsm.New(nil)
	cmd := putCmd("s1", "prod/db/password", 0)
	cmd.Description = str("the db password")
	res := mustOK(t, f, fsm.CmdPutVersion, cmd)

	sec, v := res.Secret, res.Version
	if sec == nil || v == nil {
		t.Fatalf("result lacks secret or version: %+v", res)
	}
	wantSec := fsm.Secret{
		ID: "s1", Path: "prod/db/password", Name: "password", Description: "the db password",
		CreatedBy: "alice", CreatedAt: cmd.At, UpdatedAt: cmd.At,
		LatestVersion: 1, CurrentVersion: 1, MaxVersions: fsm.DefaultMaxVersions,
	}
	if *sec != wantSec {
		t.Errorf("secret = %+v\nwant %+v", *sec, wantSec)
	}
	if v.Number != 1 || v.State != fsm.StateCurrent || v.ID != "s1-v1" || v.SecretID != "s1" ||
		!bytes.Equal(v.Ciphertext, cmd.Ciphertext) || !bytes.Equal(v.WrappedKey, cmd.WrappedKey) ||
		v.KMSKeyID != "local:key-1" || v.KMSProvider != "local" || v.CreatedBy != "alice" ||
		v.CreatedAt != cmd.At || v.Destroyed {
		t.Errorf("version = %+v", *v)
	}

	st := f.State()
	if got, ok := st.SecretByPath("prod/db/password"); !ok || got != sec {
		t.Errorf("SecretByPath = %v, %v; want the result's secret", got, ok)
	}
	if got, ok := st.SecretByID("s1"); !ok || got != sec {
		t.Errorf("SecretByID = %v, %v", got, ok)
	}
	if got, ok := st.Version("s1", 1); !ok || got != v {
		t.Errorf("Version(s1, 1) = %v, %v", got, ok)
	}
	if _, ok := st.Version("s1", 2); ok {
		t.Error("Version(s1, 2) exists")
	}
	if st.SecretCount() != 1 || st.Index() != 1 {
		t.Errorf("count %d index %d", st.SecretCount(), st.Index())
	}
	checkVersionInvariants(t, st, "s1")
}

func TestPutVersionLifecycleStates(t *testing.T) {
	f := fsm.New(nil)
	const id, path = "s1", "app/key"
	for n := uint64(1); n <= 25; n++ {
		res := mustOK(t, f, fsm.CmdPutVersion, putCmd(id, path, n-1))
		if res.Version.Number != n || res.Version.State != fsm.StateCurrent {
			t.Fatalf("write %d: got version %d %v", n, res.Version.Number, res.Version.State)
		}
		if res.Secret.LatestVersion != n || res.Secret.CurrentVersion != n || res.Secret.PreviousVersion != n-1 {
			t.Fatalf("write %d: secret %+v", n, res.Secret)
		}
		st := f.State()
		checkVersionInvariants(t, st, id)

		vs := st.Versions(id)
		seen := map[uint64]bool{}
		var current, previous int
		for _, v := range vs {
			if seen[v.Number] {
				t.Fatalf("write %d: version %d listed twice", n, v.Number)
			}
			seen[v.Number] = true
			want := fsm.StateDeprecated
			switch v.Number {
			case n:
				want = fsm.StateCurrent
				current++
			case n - 1:
				want = fsm.StatePrevious
				previous++
			}
			if v.State != want {
				t.Fatalf("write %d: version %d is %v, want %v", n, v.Number, v.State, want)
			}
		}
		if current != 1 || previous > 1 || len(seen) != int(n) {
			t.Fatalf("write %d: %d current, %d previous, %d versions", n, current, previous, len(seen))
		}
		for k := uint64(1); k <= n; k++ {
			if !seen[k] {
				t.Fatalf("write %d: version %d missing (gap)", n, k)
			}
		}
	}
	sec, _ := f.State().SecretByID(id)
	if sec.CreatedAt != baseTime+1 || sec.UpdatedAt != baseTime+25 {
		t.Errorf("created %d updated %d", sec.CreatedAt, sec.UpdatedAt)
	}
}

func TestPutVersionDescriptionKeptUnlessSet(t *testing.T) {
	f := fsm.New(nil)
	c := putCmd("s1", "p", 0)
	c.Description = str("first")
	mustOK(t, f, fsm.CmdPutVersion, c)
	res := mustOK(t, f, fsm.CmdPutVersion, putCmd("s1", "p", 1)) // nil description
	if res.Secret.Description != "first" {
		t.Errorf("description = %q, want kept", res.Secret.Description)
	}
	c = putCmd("s1", "p", 2)
	c.Description = str("")
	res = mustOK(t, f, fsm.CmdPutVersion, c)
	if res.Secret.Description != "" {
		t.Errorf("description = %q, want cleared", res.Secret.Description)
	}
	// CreatedBy/CreatedAt belong to the first write.
	c = putCmd("s1", "p", 3)
	c.By = "bob"
	res = mustOK(t, f, fsm.CmdPutVersion, c)
	if res.Secret.CreatedBy != "alice" || res.Secret.CreatedAt != baseTime+1 || res.Version.CreatedBy != "bob" {
		t.Errorf("secret %+v version %+v", res.Secret, res.Version)
	}
}

func TestPutVersionConflicts(t *testing.T) {
	// Every case starts from secret s1 at path "p" with 3 versions, and secret s2 at "q" with one.
	tests := []struct {
		name    string
		cmd     func() *fsm.PutVersion
		userCAS bool
		current uint64
		latest  uint64
	}{
		{"cas 0 on existing secret", func() *fsm.PutVersion {
			c := putCmd("s1", "p", 3)
			c.CAS = u64(0)
			return c
		}, true, 3, 3},
		{"cas too low", func() *fsm.PutVersion {
			c := putCmd("s1", "p", 3)
			c.CAS = u64(2)
			return c
		}, true, 3, 3},
		{"cas too high", func() *fsm.PutVersion {
			c := putCmd("s1", "p", 3)
			c.CAS = u64(4)
			return c
		}, true, 3, 3},
		{"cas on a missing secret", func() *fsm.PutVersion {
			c := putCmd("s9", "nope", 0)
			c.CAS = u64(1)
			return c
		}, true, 0, 0},
		{"cas wins over a stale expect", func() *fsm.PutVersion {
			c := putCmd("s1", "p", 1)
			c.CAS = u64(1)
			return c
		}, true, 3, 3},
		{"expect behind", func() *fsm.PutVersion { return putCmd("s1", "p", 2) }, false, 3, 3},
		{"expect ahead", func() *fsm.PutVersion { return putCmd("s1", "p", 4) }, false, 3, 3},
		{"expect 0 on existing secret", func() *fsm.PutVersion { return putCmd("s1", "p", 0) }, false, 3, 3},
		{"expect on missing secret", func() *fsm.PutVersion { return putCmd("s9", "nope", 2) }, false, 0, 0},
		{"matching cas but expect behind", func() *fsm.PutVersion {
			c := putCmd("s1", "p", 2)
			c.CAS = u64(3)
			return c
		}, false, 3, 3},
		{"other secret id at the path", func() *fsm.PutVersion { return putCmd("s-other", "p", 3) }, false, 3, 3},
		{"other secret id at the path with cas", func() *fsm.PutVersion {
			c := putCmd("s2", "p", 3)
			c.CAS = u64(3)
			return c
		}, false, 3, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := fsm.New(nil)
			putN(t, f, "s1", "p", 3)
			put(t, f, "s2", "q")
			res := mustFail(t, f, fsm.CmdPutVersion, tc.cmd(), fsm.ErrConflict)
			ce := conflict(t, res.Err)
			want := fsm.ConflictError{UserCAS: tc.userCAS, Current: tc.current, Latest: tc.latest}
			if *ce != want {
				t.Errorf("conflict = %+v, want %+v", *ce, want)
			}
			checkVersionInvariants(t, f.State(), "s1")
		})
	}
}

func TestPutVersionCASSuccess(t *testing.T) {
	f := fsm.New(nil)
	c := putCmd("s1", "p", 0)
	c.CAS = u64(0) // must not exist: ok on create
	mustOK(t, f, fsm.CmdPutVersion, c)
	for n := uint64(1); n < 5; n++ {
		c := putCmd("s1", "p", n)
		c.CAS = u64(n)
		res := mustOK(t, f, fsm.CmdPutVersion, c)
		if res.Version.Number != n+1 {
			t.Fatalf("version %d, want %d", res.Version.Number, n+1)
		}
	}
	// A failed CAS in between does not disturb the next matching one.
	c = putCmd("s1", "p", 5)
	c.CAS = u64(4)
	mustFail(t, f, fsm.CmdPutVersion, c, fsm.ErrConflict)
	c.CAS = u64(5)
	if res := mustOK(t, f, fsm.CmdPutVersion, c); res.Version.Number != 6 {
		t.Fatalf("version %d, want 6", res.Version.Number)
	}
}

func TestPutVersionCASAfterDestroyAndDelete(t *testing.T) {
	f := fsm.New(nil)
	putN(t, f, "s1", "p", 3)
	mustOK(t, f, fsm.CmdDestroyVersions, &fsm.DestroyVersions{SecretID: "s1", Versions: []uint64{1, 2}, At: baseTime})
	// CAS compares with CURRENT, regardless of destroyed history.
	c := putCmd("s1", "p", 3)
	c.CAS = u64(3)
	mustOK(t, f, fsm.CmdPutVersion, c)
	mustOK(t, f, fsm.CmdDeleteSecret, &fsm.DeleteSecret{SecretID: "s1", At: baseTime})
	// A deleted secret still occupies its path: cas 0 fails with its CURRENT.
	c = putCmd("s1", "p", 4)
	c.CAS = u64(0)
	res := mustFail(t, f, fsm.CmdPutVersion, c, fsm.ErrConflict)
	if ce := conflict(t, res.Err); !ce.UserCAS || ce.Current != 4 || ce.Latest != 4 {
		t.Errorf("conflict %+v", ce)
	}
}

func TestPutVersionInvalid(t *testing.T) {
	tests := []struct {
		name string
		cmd  func() *fsm.PutVersion
		want error
	}{
		{"no secret id", func() *fsm.PutVersion { c := putCmd("", "new", 0); c.VersionID = "v"; return c }, fsm.ErrInvalid},
		{"no path", func() *fsm.PutVersion { return putCmd("n1", "", 0) }, fsm.ErrInvalid},
		{"no version id", func() *fsm.PutVersion { c := putCmd("n1", "new", 0); c.VersionID = ""; return c }, fsm.ErrInvalid},
		{"max versions 1 on create", func() *fsm.PutVersion { c := putCmd("n1", "new", 0); c.MaxVersions = 1; return c }, fsm.ErrInvalid},
		{"max versions 1 on update", func() *fsm.PutVersion { c := putCmd("s1", "p", 2); c.MaxVersions = 1; return c }, fsm.ErrInvalid},
		{"secret id in use at another path", func() *fsm.PutVersion { return putCmd("s1", "elsewhere", 0) }, fsm.ErrInvalid},
		{"deleted secret", func() *fsm.PutVersion { return putCmd("d1", "deleted", 1) }, fsm.ErrDeleted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := fsm.New(nil)
			putN(t, f, "s1", "p", 2)
			put(t, f, "d1", "deleted")
			mustOK(t, f, fsm.CmdDeleteSecret, &fsm.DeleteSecret{SecretID: "d1", At: baseTime})
			mustFail(t, f, fsm.CmdPutVersion, tc.cmd(), tc.want)
		})
	}
}

func TestPutVersionUnknownFieldsAccepted(t *testing.T) {
	// A newer leader may add optional fields; an older follower must still apply the command.
	f := fsm.New(nil)
	meta, err := json.Marshal(map[string]any{
		"secret_id": "s1", "path": "p", "expect": 0, "version_id": "v1", "at": baseTime,
		"some_future_field": map[string]any{"x": 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	data := []byte{byte(fsm.CmdPutVersion)}
	for _, part := range [][]byte{meta, []byte("ct"), []byte("wk")} {
		data = binary.AppendUvarint(data, uint64(len(part)))
		data = append(data, part...)
	}
	res, err := f.ApplyCommand(f.AppliedIndex()+1, data)
	if err != nil || res.Err != nil {
		t.Fatalf("apply: %v %v", err, res)
	}
	if res.Version.Number != 1 || string(res.Version.Ciphertext) != "ct" {
		t.Errorf("version %+v", res.Version)
	}
}

func TestRetentionDefault(t *testing.T) {
	f := fsm.New(nil)
	const id = "s1"
	cmds := map[uint64]*fsm.PutVersion{}
	for n := uint64(1); n <= 15; n++ {
		cmds[n] = putCmd(id, "p", n-1)
		mustOK(t, f, fsm.CmdPutVersion, cmds[n])
		checkVersionInvariants(t, f.State(), id)
	}
	st := f.State()
	sec, _ := st.SecretByID(id)
	if sec.MaxVersions != fsm.DefaultMaxVersions || fsm.DefaultMaxVersions != 10 {
		t.Fatalf("max versions %d", sec.MaxVersions)
	}
	if sec.PrunedThrough != 5 {
		t.Errorf("pruned through %d, want 5", sec.PrunedThrough)
	}
	for n := uint64(1); n <= 15; n++ {
		v, ok := st.Version(id, n)
		if !ok {
			t.Fatalf("version %d missing", n)
		}
		c := cmds[n]
		// Metadata always stays.
		if v.ID != c.VersionID || v.SecretID != id || v.Number != n || v.KMSKeyID != c.KMSKeyID ||
			v.KMSProvider != c.KMSProvider || v.CreatedBy != c.By || v.CreatedAt != c.At {
			t.Errorf("version %d metadata %+v", n, v)
		}
		if n <= 5 {
			if !v.Destroyed || v.Ciphertext != nil || v.WrappedKey != nil || v.State != fsm.StateDeprecated {
				t.Errorf("version %d should be dropped by retention: %+v", n, v)
			}
		} else if v.Destroyed || !bytes.Equal(v.Ciphertext, c.Ciphertext) || !bytes.Equal(v.WrappedKey, c.WrappedKey) {
			t.Errorf("version %d should keep its value: %+v", n, v)
		}
	}
}

func TestRetentionMaxVersionsOverride(t *testing.T) {
	type write struct {
		n   int    // writes
		max uint32 // MaxVersions on each of them
	}
	tests := []struct {
		name       string
		writes     []write
		wantMax    uint32
		wantKeptLo uint64 // lowest version that keeps its value
	}{
		{"3 from creation", []write{{8, 3}}, 3, 6},
		{"2 from creation", []write{{8, 2}}, 2, 7},
		{"set once then kept", []write{{1, 3}, {7, 0}}, 3, 6},
		{"lowered mid-life", []write{{12, 0}, {1, 2}}, 2, 12},
		{"raised mid-life keeps old drops", []write{{8, 2}, {1, 20}}, 20, 7},
		{"raised then more writes", []write{{8, 2}, {5, 20}}, 20, 7},
		{"large window keeps all", []write{{30, 50}}, 50, 1},
		{"exactly max writes", []write{{10, 0}}, 10, 1},
		{"one past max", []write{{11, 0}}, 10, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := fsm.New(nil)
			var latest uint64
			for _, w := range tc.writes {
				for range w.n {
					c := putCmd("s1", "p", latest)
					c.MaxVersions = w.max
					mustOK(t, f, fsm.CmdPutVersion, c)
					latest++
					checkVersionInvariants(t, f.State(), "s1")
				}
			}
			st := f.State()
			sec, _ := st.SecretByID("s1")
			if sec.MaxVersions != tc.wantMax {
				t.Errorf("max versions %d, want %d", sec.MaxVersions, tc.wantMax)
			}
			for n := uint64(1); n <= latest; n++ {
				v, _ := st.Version("s1", n)
				if kept := n >= tc.wantKeptLo; kept == v.Destroyed || kept != (v.Ciphertext != nil) {
					t.Errorf("version %d: destroyed=%v ciphertext=%q, want kept=%v", n, v.Destroyed, v.Ciphertext, kept)
				}
			}
		})
	}
}

// TestRetentionAfterManualDestroy: retention skips versions already destroyed by hand and keeps
// counting from where it got.
func TestRetentionAfterManualDestroy(t *testing.T) {
	f := fsm.New(nil)
	putN(t, f, "s1", "p", 5)
	mustOK(t, f, fsm.CmdDestroyVersions, &fsm.DestroyVersions{SecretID: "s1", Versions: []uint64{2, 4}, At: baseTime})
	putN(t, f, "s1", "p", 7) // latest 12: 1 and 2 outside the window
	st := f.State()
	for n := uint64(1); n <= 12; n++ {
		v, _ := st.Version("s1", n)
		want := n <= 2 || n == 4
		if v.Destroyed != want {
			t.Errorf("version %d destroyed=%v, want %v", n, v.Destroyed, want)
		}
	}
	checkVersionInvariants(t, st, "s1")
}

func TestPutVersionSecretsAreIndependent(t *testing.T) {
	f := fsm.New(nil)
	// Ids where one is a prefix of another must not share versions.
	ids := []string{"s1", "s10", "s100", "s"}
	for i, id := range ids {
		putN(t, f, id, fmt.Sprintf("path/%s", id), i+2)
	}
	st := f.State()
	for i, id := range ids {
		if got := len(st.Versions(id)); got != i+2 {
			t.Errorf("%s: %d versions, want %d", id, got, i+2)
		}
		checkVersionInvariants(t, st, id)
	}
	if got := st.Versions("nope"); len(got) != 0 {
		t.Errorf("versions of unknown secret: %v", got)
	}
}

func TestNewestInState(t *testing.T) {
	tests := []struct {
		name    string
		writes  int
		destroy []uint64
		query   fsm.VersionState
		id      string
		want    uint64 // 0: none
	}{
		{"current", 5, nil, fsm.StateCurrent, "s1", 5},
		{"previous", 5, nil, fsm.StatePrevious, "s1", 4},
		{"newest deprecated", 5, nil, fsm.StateDeprecated, "s1", 3},
		{"skips destroyed deprecated", 5, []uint64{3}, fsm.StateDeprecated, "s1", 2},
		{"skips several destroyed", 5, []uint64{3, 2}, fsm.StateDeprecated, "s1", 1},
		{"all deprecated destroyed", 5, []uint64{1, 2, 3}, fsm.StateDeprecated, "s1", 0},
		{"destroyed previous", 5, []uint64{4}, fsm.StatePrevious, "s1", 0},
		{"retention dropped", 15, nil, fsm.StateDeprecated, "s1", 13},
		{"retention and destroy", 15, []uint64{6, 7, 8, 9, 10, 11, 12, 13}, fsm.StateDeprecated, "s1", 0},
		{"single version has no previous", 1, nil, fsm.StatePrevious, "s1", 0},
		{"single version has no deprecated", 1, nil, fsm.StateDeprecated, "s1", 0},
		{"pending never set", 5, nil, fsm.StatePending, "s1", 0},
		{"unknown secret", 5, nil, fsm.StateCurrent, "nope", 0},
		{"prefix id does not leak", 5, nil, fsm.StateCurrent, "s", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := fsm.New(nil)
			putN(t, f, "s1", "p", tc.writes)
			put(t, f, "s10", "q") // a neighbour in key order
			if tc.destroy != nil {
				mustOK(t, f, fsm.CmdDestroyVersions, &fsm.DestroyVersions{SecretID: "s1", Versions: tc.destroy, At: baseTime})
			}
			v, ok := f.State().NewestInState(tc.id, tc.query)
			if tc.want == 0 {
				if ok {
					t.Fatalf("got version %d, want none", v.Number)
				}
				return
			}
			if !ok || v.Number != tc.want || v.SecretID != tc.id || v.State != tc.query || v.Destroyed {
				t.Fatalf("got %+v %v, want version %d", v, ok, tc.want)
			}
		})
	}
}

func TestVersionStateStrings(t *testing.T) {
	for _, s := range []fsm.VersionState{fsm.StateCurrent, fsm.StatePrevious, fsm.StateDeprecated, fsm.StatePending} {
		got, err := fsm.ParseState(s.String())
		if err != nil || got != s {
			t.Errorf("ParseState(%q) = %v, %v", s.String(), got, err)
		}
	}
	if got, err := fsm.ParseState("current"); err != nil || got != fsm.StateCurrent {
		t.Errorf("case-insensitive parse: %v %v", got, err)
	}
	for _, bad := range []string{"", "UNKNOWN", "STATE(9)", "nope"} {
		if _, err := fsm.ParseState(bad); err == nil {
			t.Errorf("ParseState(%q) succeeded", bad)
		}
	}
	if got := fsm.VersionState(9).String(); got != "STATE(9)" {
		t.Errorf("String() = %q", got)
	}
}

func TestConflictErrorMatches(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", &fsm.ConflictError{Current: 2, Latest: 3})
	if !errors.Is(err, fsm.ErrConflict) || errors.Is(err, fsm.ErrNotFound) {
		t.Errorf("errors.Is mismatch for %v", err)
	}
	if got := (&fsm.ConflictError{Current: 2, Latest: 3}).Error(); got != "conflict: current version 2, latest version 3" {
		t.Errorf("Error() = %q", got)
	}
}

func TestEncode(t *testing.T) {
	c := putCmd("s1", "p", 3)
	c.CAS = u64(3)
	c.Ciphertext = []byte{0, 0xff, '"'}
	data, err := fsm.Encode(fsm.CmdPutVersion, c)
	if err != nil {
		t.Fatal(err)
	}
	if data[0] != byte(fsm.CmdPutVersion) {
		t.Errorf("type byte %d", data[0])
	}
	var back fsm.PutVersion
	if err := fsm.DecodePayload(data[1:], &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, c) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, *c)
	}
	if !bytes.Equal(fsm.MustEncode(fsm.CmdPutVersion, c), data) {
		t.Error("MustEncode differs from Encode")
	}
	if flagged := fsm.MustEncode(fsm.CmdNoop|fsm.FlagIgnoreUnknown, fsm.Noop{}); flagged[0] != 0x86 {
		t.Errorf("flagged type byte %#x", flagged[0])
	}

	if _, err := fsm.Encode(fsm.CmdPutVersion, make(chan int)); err == nil {
		t.Error("Encode of an unmarshalable payload succeeded")
	}
	defer func() {
		if recover() == nil {
			t.Error("MustEncode did not panic")
		}
	}()
	fsm.MustEncode(fsm.CmdPutVersion, func() {})
}
