package fsm_test

import (
	"bytes"
	"slices"
	"testing"

	"github.com/keyward/keyward/fsm"
)

func TestDestroyVersions(t *testing.T) {
	// Every case starts from secret s1 with versions 1..5 (5 CURRENT, 4 PREVIOUS), secret s10
	// with 2 versions, and secret d1 soft-deleted with 2 versions.
	tests := []struct {
		name      string
		id        string
		versions  []uint64
		wantErr   error
		want      []uint64 // Result.Destroyed
		destroyed []uint64 // versions of s1 destroyed afterwards
	}{
		{"one deprecated", "s1", []uint64{2}, nil, []uint64{2}, []uint64{2}},
		{"previous", "s1", []uint64{4}, nil, []uint64{4}, []uint64{4}},
		{"several unsorted", "s1", []uint64{3, 1, 2}, nil, []uint64{1, 2, 3}, []uint64{1, 2, 3}},
		{"duplicates", "s1", []uint64{3, 2, 3, 2, 2}, nil, []uint64{2, 3}, []uint64{2, 3}},
		{"already destroyed", "s1", []uint64{1}, nil, []uint64{1}, []uint64{1}}, // destroyed twice below
		{"current", "s1", []uint64{5}, fsm.ErrVersionIsCurrent, nil, nil},
		{"valid then current", "s1", []uint64{2, 5}, fsm.ErrVersionIsCurrent, nil, nil},
		{"current then valid", "s1", []uint64{5, 2}, fsm.ErrVersionIsCurrent, nil, nil},
		{"valid then unknown", "s1", []uint64{2, 9}, fsm.ErrNotFound, nil, nil},
		{"unknown then valid", "s1", []uint64{9, 2}, fsm.ErrNotFound, nil, nil},
		{"version zero", "s1", []uint64{0}, fsm.ErrNotFound, nil, nil},
		{"empty list", "s1", []uint64{}, fsm.ErrInvalid, nil, nil},
		{"nil list", "s1", nil, fsm.ErrInvalid, nil, nil},
		{"unknown secret", "nope", []uint64{1}, fsm.ErrNotFound, nil, nil},
		{"prefix of an id", "s", []uint64{1}, fsm.ErrNotFound, nil, nil},
		{"deleted secret", "d1", []uint64{1}, fsm.ErrDeleted, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := fsm.New(nil)
			cmds := map[uint64]*fsm.PutVersion{}
			for n := uint64(1); n <= 5; n++ {
				cmds[n] = putCmd("s1", "p", n-1)
				mustOK(t, f, fsm.CmdPutVersion, cmds[n])
			}
			putN(t, f, "s10", "q", 2)
			putN(t, f, "d1", "d", 2)
			mustOK(t, f, fsm.CmdDeleteSecret, &fsm.DeleteSecret{SecretID: "d1", At: baseTime})
			if tc.name == "already destroyed" {
				mustOK(t, f, fsm.CmdDestroyVersions, &fsm.DestroyVersions{SecretID: "s1", Versions: []uint64{1}, At: baseTime})
			}
			cmd := &fsm.DestroyVersions{SecretID: tc.id, Versions: tc.versions, At: baseTime + 100}
			if tc.wantErr != nil {
				mustFail(t, f, fsm.CmdDestroyVersions, cmd, tc.wantErr)
				return
			}
			before := f.State()
			res := mustOK(t, f, fsm.CmdDestroyVersions, cmd)
			if !slices.Equal(res.Destroyed, tc.want) {
				t.Errorf("Destroyed = %v, want %v", res.Destroyed, tc.want)
			}
			if res.Secret == nil || res.Secret.UpdatedAt != baseTime+100 {
				t.Errorf("secret %+v: UpdatedAt not set", res.Secret)
			}
			st := f.State()
			for n := uint64(1); n <= 5; n++ {
				v, _ := st.Version("s1", n)
				old, _ := before.Version("s1", n)
				if slices.Contains(tc.destroyed, n) {
					if !v.Destroyed || v.Ciphertext != nil || v.WrappedKey != nil {
						t.Errorf("version %d not shredded: %+v", n, v)
					}
					// Metadata, including the lifecycle state, stays.
					if v.ID != old.ID || v.State != old.State || v.CreatedAt != old.CreatedAt || v.KMSKeyID != old.KMSKeyID {
						t.Errorf("version %d metadata changed: %+v -> %+v", n, old, v)
					}
				} else {
					if v != old {
						t.Errorf("version %d was rewritten", n)
					}
					if v.Destroyed || !bytes.Equal(v.Ciphertext, cmds[n].Ciphertext) {
						t.Errorf("version %d lost its value", n)
					}
				}
			}
			checkVersionInvariants(t, st, "s1")
			// The neighbour is untouched.
			for _, v := range st.Versions("s10") {
				if v.Destroyed {
					t.Errorf("s10 version %d destroyed", v.Number)
				}
			}
			// Destroy changes no version numbers or pointers of the secret.
			sec, _ := st.SecretByID("s1")
			if sec.CurrentVersion != 5 || sec.PreviousVersion != 4 || sec.LatestVersion != 5 {
				t.Errorf("secret %+v", sec)
			}
		})
	}
}

func TestDestroyThenWrite(t *testing.T) {
	// A destroyed PREVIOUS becomes DEPRECATED on the next write and stays destroyed.
	f := fsm.New(nil)
	putN(t, f, "s1", "p", 3)
	mustOK(t, f, fsm.CmdDestroyVersions, &fsm.DestroyVersions{SecretID: "s1", Versions: []uint64{2}, At: baseTime})
	put(t, f, "s1", "p")
	v, _ := f.State().Version("s1", 2)
	if v.State != fsm.StateDeprecated || !v.Destroyed {
		t.Errorf("version 2: %+v", v)
	}
	checkVersionInvariants(t, f.State(), "s1")
}

func TestDeleteRestore(t *testing.T) {
	f := fsm.New(nil)
	putN(t, f, "s1", "a/one", 3)
	put(t, f, "s2", "a/two")

	res := mustOK(t, f, fsm.CmdDeleteSecret, &fsm.DeleteSecret{SecretID: "s1", At: baseTime + 50})
	if !res.Secret.Deleted() || res.Secret.DeletedAt != baseTime+50 || res.Secret.UpdatedAt != baseTime+50 {
		t.Fatalf("deleted secret %+v", res.Secret)
	}
	st := f.State()
	if got, _ := st.List("a/", "", 10); len(got) != 1 || got[0].ID != "s2" {
		t.Errorf("List after delete = %v", ids(got))
	}
	for _, lookup := range []func() (*fsm.Secret, bool){
		func() (*fsm.Secret, bool) { return st.SecretByPath("a/one") },
		func() (*fsm.Secret, bool) { return st.SecretByID("s1") },
	} {
		if s, ok := lookup(); !ok || !s.Deleted() || s.LatestVersion != 3 {
			t.Errorf("lookup of deleted secret = %+v, %v", s, ok)
		}
	}
	if st.SecretCount() != 2 || len(st.Versions("s1")) != 3 {
		t.Errorf("count %d, versions %d", st.SecretCount(), len(st.Versions("s1")))
	}
	checkVersionInvariants(t, st, "s1")

	// Deleting again is idempotent: it keeps the original deletion time.
	res = mustOK(t, f, fsm.CmdDeleteSecret, &fsm.DeleteSecret{SecretID: "s1", At: baseTime + 60})
	if res.Secret.DeletedAt != baseTime+50 {
		t.Errorf("second delete moved DeletedAt to %d", res.Secret.DeletedAt)
	}
	if s, _ := f.State().SecretByID("s1"); s.DeletedAt != baseTime+50 {
		t.Errorf("stored DeletedAt %d", s.DeletedAt)
	}

	// Writes and destroys are refused while deleted.
	mustFail(t, f, fsm.CmdPutVersion, putCmd("s1", "a/one", 3), fsm.ErrDeleted)
	mustFail(t, f, fsm.CmdDestroyVersions, &fsm.DestroyVersions{SecretID: "s1", Versions: []uint64{1}}, fsm.ErrDeleted)

	// Restore brings it back with its versions.
	res = mustOK(t, f, fsm.CmdRestoreSecret, &fsm.RestoreSecret{SecretID: "s1", At: baseTime + 70})
	if res.Secret.Deleted() || res.Secret.UpdatedAt != baseTime+70 {
		t.Errorf("restored secret %+v", res.Secret)
	}
	if got, _ := f.State().List("a/", "", 10); !slices.Equal(ids(got), []string{"s1", "s2"}) {
		t.Errorf("List after restore = %v", ids(got))
	}
	mustFail(t, f, fsm.CmdRestoreSecret, &fsm.RestoreSecret{SecretID: "s1", At: baseTime}, fsm.ErrNotDeleted)
	if r := put(t, f, "s1", "a/one"); r.Version.Number != 4 {
		t.Errorf("write after restore got version %d, want 4", r.Version.Number)
	}
	checkVersionInvariants(t, f.State(), "s1")
}

func TestLifecycleNotFound(t *testing.T) {
	tests := []struct {
		name    string
		typ     fsm.CommandType
		payload any
	}{
		{"delete", fsm.CmdDeleteSecret, &fsm.DeleteSecret{SecretID: "nope"}},
		{"restore", fsm.CmdRestoreSecret, &fsm.RestoreSecret{SecretID: "nope"}},
		{"purge", fsm.CmdPurgeSecret, &fsm.PurgeSecret{SecretID: "nope"}},
		{"destroy", fsm.CmdDestroyVersions, &fsm.DestroyVersions{SecretID: "nope", Versions: []uint64{1}}},
		{"purge by path is not by id", fsm.CmdPurgeSecret, &fsm.PurgeSecret{SecretID: "p"}},
		{"empty id", fsm.CmdDeleteSecret, &fsm.DeleteSecret{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := fsm.New(nil)
			put(t, f, "s1", "p")
			mustFail(t, f, tc.typ, tc.payload, fsm.ErrNotFound)
		})
	}
}

func TestPurge(t *testing.T) {
	for _, deleteFirst := range []bool{false, true} {
		name := "live"
		if deleteFirst {
			name = "soft-deleted"
		}
		t.Run(name, func(t *testing.T) {
			f := fsm.New(nil)
			putN(t, f, "s1", "a/x", 4)
			putN(t, f, "s10", "a/y", 2) // id with s1 as prefix: must survive
			putN(t, f, "s", "a/z", 2)   // id that is a prefix of s1: must survive
			if deleteFirst {
				mustOK(t, f, fsm.CmdDeleteSecret, &fsm.DeleteSecret{SecretID: "s1", At: baseTime})
			}
			before := f.State()
			res := mustOK(t, f, fsm.CmdPurgeSecret, &fsm.PurgeSecret{SecretID: "s1"})
			if res.Secret == nil || res.Secret.ID != "s1" {
				t.Errorf("result secret %+v", res.Secret)
			}
			st := f.State()
			if _, ok := st.SecretByID("s1"); ok {
				t.Error("SecretByID finds purged secret")
			}
			if _, ok := st.SecretByPath("a/x"); ok {
				t.Error("SecretByPath finds purged secret")
			}
			if vs := st.Versions("s1"); len(vs) != 0 {
				t.Errorf("purged secret still has %d versions", len(vs))
			}
			for n := uint64(1); n <= 4; n++ {
				if _, ok := st.Version("s1", n); ok {
					t.Errorf("version %d survives", n)
				}
			}
			if st.SecretCount() != 2 {
				t.Errorf("count %d", st.SecretCount())
			}
			for _, id := range []string{"s10", "s"} {
				if got := len(st.Versions(id)); got != 2 {
					t.Errorf("%s has %d versions after purging s1", id, got)
				}
				checkVersionInvariants(t, st, id)
			}
			// The old view still holds everything.
			if len(before.Versions("s1")) != 4 {
				t.Error("purge changed an older State")
			}
			mustFail(t, f, fsm.CmdPurgeSecret, &fsm.PurgeSecret{SecretID: "s1"}, fsm.ErrNotFound)

			// The path is free for a new secret with a new id, starting again at version 1.
			r := mustOK(t, f, fsm.CmdPutVersion, putCmd("s2", "a/x", 0))
			if r.Secret.ID != "s2" || r.Version.Number != 1 || r.Secret.LatestVersion != 1 {
				t.Errorf("new secret %+v version %+v", r.Secret, r.Version)
			}
			if got := f.State().Versions("s2"); len(got) != 1 {
				t.Errorf("new secret has %d versions", len(got))
			}
			checkVersionInvariants(t, f.State(), "s2")
			// The purged id can be reused too, and no old version resurfaces.
			r = mustOK(t, f, fsm.CmdPutVersion, putCmd("s1", "b/x", 0))
			if got := f.State().Versions("s1"); len(got) != 1 || got[0] != r.Version {
				t.Errorf("reused id has versions %v", got)
			}
		})
	}
}

func ids(secs []*fsm.Secret) []string {
	out := make([]string, len(secs))
	for i, s := range secs {
		out[i] = s.ID
	}
	return out
}
