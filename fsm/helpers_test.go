package fsm_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/keyward/keyward/fsm"
)

// baseTime is the fixed "proposer clock" of every test: commands carry their own timestamps.
const baseTime int64 = 1_700_000_000_000_000_000

// mustApply encodes payload with fsm.Encode and applies it at the next index. It fails the test
// if the entry cannot be applied at all (a decode error); business failures stay in Result.Err.
func mustApply(t testing.TB, f *fsm.FSM, typ fsm.CommandType, payload any) *fsm.Result {
	t.Helper()
	data, err := fsm.Encode(typ, payload)
	if err != nil {
		t.Fatalf("encode %d: %v", typ, err)
	}
	idx := f.AppliedIndex() + 1
	res, err := f.ApplyCommand(idx, data)
	if err != nil {
		t.Fatalf("apply %d at %d: %v", typ, idx, err)
	}
	if res == nil {
		t.Fatalf("apply %d at %d: nil result", typ, idx)
	}
	if res.Index != idx {
		t.Fatalf("result index = %d, want %d", res.Index, idx)
	}
	if got := f.AppliedIndex(); got != idx {
		t.Fatalf("applied index = %d, want %d", got, idx)
	}
	return res
}

// mustOK is mustApply for a command that must succeed.
func mustOK(t testing.TB, f *fsm.FSM, typ fsm.CommandType, payload any) *fsm.Result {
	t.Helper()
	res := mustApply(t, f, typ, payload)
	if res.Err != nil {
		t.Fatalf("command %d: unexpected error %v", typ, res.Err)
	}
	return res
}

// mustFail applies a command that must fail with an error matching want (errors.Is) and
// checks that it changed nothing but the applied index.
func mustFail(t testing.TB, f *fsm.FSM, typ fsm.CommandType, payload any, want error) *fsm.Result {
	t.Helper()
	before := f.State()
	res := mustApply(t, f, typ, payload)
	if res.Err == nil {
		t.Fatalf("command %d: succeeded, want %v", typ, want)
	}
	if !errors.Is(res.Err, want) {
		t.Fatalf("command %d: error %v, want %v", typ, res.Err, want)
	}
	if res.Secret != nil || res.Version != nil || res.Destroyed != nil {
		t.Errorf("failed command returned data: %+v", res)
	}
	assertUnchangedButIndex(t, before, f.State())
	return res
}

// putCmd builds version expect+1 of secret id at path with deterministic contents.
func putCmd(id, path string, expect uint64) *fsm.PutVersion {
	n := expect + 1
	return &fsm.PutVersion{
		SecretID:    id,
		Path:        path,
		Expect:      expect,
		VersionID:   fmt.Sprintf("%s-v%d", id, n),
		Ciphertext:  []byte(fmt.Sprintf("ct:%s:%d", id, n)),
		WrappedKey:  []byte(fmt.Sprintf("wk:%s:%d", id, n)),
		KMSKeyID:    "local:key-1",
		KMSProvider: "local",
		By:          "alice",
		At:          baseTime + int64(n),
	}
}

// put writes the next version of a secret (creating it if needed) and returns the result.
func put(t testing.TB, f *fsm.FSM, id, path string) *fsm.Result {
	t.Helper()
	var latest uint64
	if s, ok := f.State().SecretByPath(path); ok {
		latest = s.LatestVersion
	}
	return mustOK(t, f, fsm.CmdPutVersion, putCmd(id, path, latest))
}

// putN writes n versions of a secret.
func putN(t testing.TB, f *fsm.FSM, id, path string, n int) {
	t.Helper()
	for range n {
		put(t, f, id, path)
	}
}

func u64(v uint64) *uint64 { return &v }
func str(v string) *string { return &v }

// snapshotBytes serialises a State with the package's own snapshot writer: a complete,
// deterministic rendering of everything a State holds.
func snapshotBytes(t testing.TB, st *fsm.State) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := fsm.WriteSnapshot(&buf, st); err != nil {
		t.Fatalf("write snapshot: %v", err)
	}
	return buf.Bytes()
}

// assertUnchangedButIndex checks that after is before with only the index advanced by one.
func assertUnchangedButIndex(t testing.TB, before, after *fsm.State) {
	t.Helper()
	if after.Index() != before.Index()+1 {
		t.Errorf("index %d -> %d, want +1", before.Index(), after.Index())
	}
	if before.AuditSeq() != after.AuditSeq() || before.SecretCount() != after.SecretCount() {
		t.Errorf("audit seq %d -> %d, secret count %d -> %d", before.AuditSeq(), after.AuditSeq(),
			before.SecretCount(), after.SecretCount())
	}
	// Same stored pointers for every secret and version: nothing was copied or replaced.
	for _, s := range allSecrets(before) {
		a, ok := after.SecretByID(s.ID)
		if !ok || a != s {
			t.Errorf("secret %s replaced or removed", s.ID)
			continue
		}
		if p, ok := after.SecretByPath(s.Path); !ok || p != s {
			t.Errorf("secret %s path index changed", s.ID)
		}
		bv, av := before.Versions(s.ID), after.Versions(s.ID)
		if len(bv) != len(av) {
			t.Errorf("secret %s: %d versions -> %d", s.ID, len(bv), len(av))
			continue
		}
		for i := range bv {
			if bv[i] != av[i] {
				t.Errorf("secret %s version %d replaced", s.ID, bv[i].Number)
			}
		}
	}
	// And the full rendering, except the header, is byte-identical.
	b, a := snapshotBytes(t, before), snapshotBytes(t, after)
	bh, bb, _ := bytes.Cut(b, []byte("\n"))
	ah, ab, _ := bytes.Cut(a, []byte("\n"))
	if !bytes.Equal(bb, ab) {
		t.Errorf("state changed:\nbefore %s\nafter  %s", bb, ab)
	}
	var bhm, ahm map[string]any
	if err := json.Unmarshal(bh, &bhm); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(ah, &ahm); err != nil {
		t.Fatal(err)
	}
	delete(bhm, "index")
	delete(ahm, "index")
	if !reflect.DeepEqual(bhm, ahm) {
		t.Errorf("snapshot header changed: %v -> %v", bhm, ahm)
	}
}

// allSecrets returns every secret of a state, soft-deleted ones included, read back from the
// snapshot stream (the State API lists only live secrets).
func allSecrets(st *fsm.State) []*fsm.Secret {
	var buf bytes.Buffer
	if err := fsm.WriteSnapshot(&buf, st); err != nil {
		panic(err)
	}
	var out []*fsm.Secret
	dec := json.NewDecoder(&buf)
	for {
		var rec struct {
			S *struct {
				ID string `json:"id"`
			} `json:"s"`
		}
		if err := dec.Decode(&rec); err != nil {
			break
		}
		if rec.S != nil {
			s, ok := st.SecretByID(rec.S.ID)
			if !ok {
				panic("snapshot names unknown secret " + rec.S.ID)
			}
			out = append(out, s)
		}
	}
	return out
}

// checkVersionInvariants asserts the version bookkeeping of one secret in one state: numbers
// 1..LatestVersion each exactly once, exactly one CURRENT (= CurrentVersion), at most one
// PREVIOUS (= PreviousVersion), everything older DEPRECATED.
func checkVersionInvariants(t testing.TB, st *fsm.State, id string) {
	t.Helper()
	if err := versionInvariants(st, id); err != nil {
		t.Error(err)
	}
}

func versionInvariants(st *fsm.State, id string) error {
	sec, ok := st.SecretByID(id)
	if !ok {
		return fmt.Errorf("secret %s missing", id)
	}
	vs := st.Versions(id)
	if uint64(len(vs)) != sec.LatestVersion {
		return fmt.Errorf("secret %s: %d versions, latest %d", id, len(vs), sec.LatestVersion)
	}
	var current, previous int
	for i, v := range vs {
		want := sec.LatestVersion - uint64(i) // newest first, gapless
		if v.Number != want {
			return fmt.Errorf("secret %s: versions[%d] is %d, want %d", id, i, v.Number, want)
		}
		if v.SecretID != id {
			return fmt.Errorf("secret %s: version %d belongs to %s", id, v.Number, v.SecretID)
		}
		switch v.State {
		case fsm.StateCurrent:
			current++
			if v.Number != sec.CurrentVersion {
				return fmt.Errorf("secret %s: CURRENT is %d, secret says %d", id, v.Number, sec.CurrentVersion)
			}
		case fsm.StatePrevious:
			previous++
			if v.Number != sec.PreviousVersion {
				return fmt.Errorf("secret %s: PREVIOUS is %d, secret says %d", id, v.Number, sec.PreviousVersion)
			}
		case fsm.StateDeprecated:
			if v.Number >= sec.PreviousVersion {
				return fmt.Errorf("secret %s: version %d DEPRECATED but not older than PREVIOUS %d", id, v.Number, sec.PreviousVersion)
			}
		default:
			return fmt.Errorf("secret %s: version %d in state %v", id, v.Number, v.State)
		}
		if v.Destroyed != (v.Ciphertext == nil) || v.Destroyed != (v.WrappedKey == nil) {
			return fmt.Errorf("secret %s: version %d destroyed=%v with ciphertext %q key %q", id, v.Number, v.Destroyed, v.Ciphertext, v.WrappedKey)
		}
	}
	if sec.LatestVersion > 0 && current != 1 {
		return fmt.Errorf("secret %s: %d CURRENT versions", id, current)
	}
	if previous > 1 || (previous == 0) != (sec.PreviousVersion == 0) {
		return fmt.Errorf("secret %s: %d PREVIOUS versions, secret says %d", id, previous, sec.PreviousVersion)
	}
	if sec.CurrentVersion != sec.LatestVersion {
		return fmt.Errorf("secret %s: current %d != latest %d", id, sec.CurrentVersion, sec.LatestVersion)
	}
	return nil
}

// conflict extracts a *ConflictError.
func conflict(t testing.TB, err error) *fsm.ConflictError {
	t.Helper()
	var ce *fsm.ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *ConflictError", err, err)
	}
	if !errors.Is(err, fsm.ErrConflict) {
		t.Fatalf("ConflictError does not match ErrConflict")
	}
	return ce
}
