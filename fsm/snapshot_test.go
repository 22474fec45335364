package fsm_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"reflect"
	"slices"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/keyward/keyward/fsm"
)

// memSink is an in-memory raft.SnapshotSink.
type memSink struct {
	bytes.Buffer
	closed, cancelled int
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled++; return nil }
func (s *memSink) Close() error  { s.closed++; return nil }

var _ raft.SnapshotSink = (*memSink)(nil)

// failingSink accepts limit bytes, then fails every write.
type failingSink struct {
	memSink
	limit int
}

func (s *failingSink) Write(p []byte) (int, error) {
	if s.Len()+len(p) > s.limit {
		return 0, errors.New("disk full")
	}
	return s.memSink.Write(p)
}

// trackingReader records whether Restore closed it.
type trackingReader struct {
	io.Reader
	closed bool
}

func (r *trackingReader) Close() error { r.closed = true; return nil }

func nopCloser(b []byte) io.ReadCloser { return io.NopCloser(bytes.NewReader(b)) }

// mixedWorkload builds a state touching every command type and returns the secret ids it used.
func mixedWorkload(t testing.TB, f *fsm.FSM) []string {
	t.Helper()
	putN(t, f, "s1", "prod/db", 14) // retention dropped 1..4
	putN(t, f, "s2", "prod/api", 3)
	putN(t, f, "s3", "dev/x", 2)
	putN(t, f, "s4", "dev/y", 4)
	putN(t, f, "s5", "gone", 2)
	c := putCmd("s6", "bin/blob", 0)
	c.Ciphertext = []byte{0, 1, 2, 0xff, 0xfe, '\n', '"', '\\'}
	c.Description = str("binary \"value\"\n")
	c.MaxVersions = 3
	mustOK(t, f, fsm.CmdPutVersion, c)
	mustOK(t, f, fsm.CmdDestroyVersions, &fsm.DestroyVersions{SecretID: "s2", Versions: []uint64{1}, At: baseTime + 10})
	mustOK(t, f, fsm.CmdDeleteSecret, &fsm.DeleteSecret{SecretID: "s3", At: baseTime + 11})
	mustOK(t, f, fsm.CmdDeleteSecret, &fsm.DeleteSecret{SecretID: "s4", At: baseTime + 12})
	mustOK(t, f, fsm.CmdRestoreSecret, &fsm.RestoreSecret{SecretID: "s4", At: baseTime + 13})
	mustOK(t, f, fsm.CmdPurgeSecret, &fsm.PurgeSecret{SecretID: "s5"})
	mustOK(t, f, fsm.CmdPutPolicy, &fsm.PutPolicy{Policy: policy("pol-1")})
	p := policy("pol-2")
	p.SecretID, p.PathPattern, p.Actions = "", "prod/*", []fsm.Action{fsm.ActionRead, fsm.ActionRotate}
	mustOK(t, f, fsm.CmdPutPolicy, &fsm.PutPolicy{Policy: p})
	mustOK(t, f, fsm.CmdPutPolicy, &fsm.PutPolicy{Policy: policy("pol-3")})
	mustOK(t, f, fsm.CmdDeletePolicy, &fsm.DeletePolicy{ID: "pol-3"})
	mustOK(t, f, fsm.CmdAppendAudit, auditBatch(0, 4))
	mustOK(t, f, fsm.CmdAppendAudit, auditBatch(4, 3))
	mustFail(t, f, fsm.CmdPutVersion, putCmd("s1", "prod/db", 2), fsm.ErrConflict) // index only
	return []string{"s1", "s2", "s3", "s4", "s5", "s6"}
}

// assertSameState compares two States through the public API.
func assertSameState(t testing.TB, want, got *fsm.State, secretIDs []string) {
	t.Helper()
	if want.Index() != got.Index() || want.AuditSeq() != got.AuditSeq() || want.SecretCount() != got.SecretCount() {
		t.Errorf("index/auditSeq/count: want %d/%d/%d, got %d/%d/%d", want.Index(), want.AuditSeq(), want.SecretCount(),
			got.Index(), got.AuditSeq(), got.SecretCount())
	}
	for _, id := range secretIDs {
		ws, wok := want.SecretByID(id)
		gs, gok := got.SecretByID(id)
		if wok != gok || (wok && !reflect.DeepEqual(ws, gs)) {
			t.Errorf("secret %s: want %+v (%v), got %+v (%v)", id, ws, wok, gs, gok)
			continue
		}
		if !wok {
			continue
		}
		if ps, ok := got.SecretByPath(ws.Path); !ok || ps.ID != id {
			t.Errorf("secret %s not found by path %s", id, ws.Path)
		}
		wv, gv := want.Versions(id), got.Versions(id)
		if len(wv) != len(gv) {
			t.Errorf("secret %s: %d versions, got %d", id, len(wv), len(gv))
			continue
		}
		for i := range wv {
			if !reflect.DeepEqual(wv[i], gv[i]) {
				t.Errorf("secret %s version %d:\nwant %+v\n got %+v", id, wv[i].Number, wv[i], gv[i])
			}
		}
	}
	wl, wm := want.List("", "", 1000)
	gl, gm := got.List("", "", 1000)
	if !slices.Equal(pathsOf(wl), pathsOf(gl)) || wm != gm {
		t.Errorf("List: want %v, got %v", pathsOf(wl), pathsOf(gl))
	}
	var wp, gp []*fsm.Policy
	want.Policies(func(p *fsm.Policy) bool { wp = append(wp, p); return true })
	got.Policies(func(p *fsm.Policy) bool { gp = append(gp, p); return true })
	if !reflect.DeepEqual(wp, gp) {
		t.Errorf("policies differ: %v vs %v", wp, gp)
	}
	if !reflect.DeepEqual(collectAudit(want, 0), collectAudit(got, 0)) {
		t.Error("audit records differ")
	}
	if !bytes.Equal(snapshotBytes(t, want), snapshotBytes(t, got)) {
		t.Error("snapshot renderings differ")
	}
}

func persist(t testing.TB, f *fsm.FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatalf("persist: %v", err)
	}
	if sink.closed != 1 || sink.cancelled != 0 {
		t.Errorf("sink closed %d cancelled %d", sink.closed, sink.cancelled)
	}
	return sink.Bytes()
}

func TestSnapshotRestore(t *testing.T) {
	src := fsm.New(nil)
	secretIDs := mixedWorkload(t, src)
	data := persist(t, src)

	dst := fsm.New(nil)
	rc := &trackingReader{Reader: bytes.NewReader(data)}
	if err := dst.Restore(rc); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if !rc.closed {
		t.Error("Restore did not close the reader")
	}
	assertSameState(t, src.State(), dst.State(), secretIDs)
	if dst.AppliedIndex() != src.AppliedIndex() {
		t.Errorf("applied index %d, want %d", dst.AppliedIndex(), src.AppliedIndex())
	}
	// Spot checks of what the workload did.
	st := dst.State()
	if v, _ := st.Version("s6", 1); !bytes.Equal(v.Ciphertext, []byte{0, 1, 2, 0xff, 0xfe, '\n', '"', '\\'}) {
		t.Errorf("binary ciphertext = %q", v.Ciphertext)
	}
	if v, _ := st.Version("s1", 4); !v.Destroyed || v.Ciphertext != nil {
		t.Errorf("retention-dropped version restored with a value: %+v", v)
	}
	if s, _ := st.SecretByID("s3"); !s.Deleted() {
		t.Error("soft delete lost")
	}
	if _, ok := st.SecretByID("s5"); ok {
		t.Error("purged secret restored")
	}

	// The restored FSM continues exactly like the original.
	for _, f := range []*fsm.FSM{src, dst} {
		put(t, f, "s1", "prod/db")
		put(t, f, "s7", "new")
		mustOK(t, f, fsm.CmdAppendAudit, auditBatch(7, 1))
		mustFail(t, f, fsm.CmdPutVersion, putCmd("s3", "dev/x", 2), fsm.ErrDeleted)
	}
	assertSameState(t, src.State(), dst.State(), append(secretIDs, "s7"))
	if r := collectAudit(dst.State(), 8); len(r) != 1 || r[0].Seq != 8 {
		t.Errorf("audit after restore: %v", r)
	}

	// Restoring over a non-empty FSM replaces its state entirely.
	other := fsm.New(nil)
	putN(t, other, "zz", "zz", 30)
	if err := other.Restore(nopCloser(data)); err != nil {
		t.Fatal(err)
	}
	if _, ok := other.State().SecretByID("zz"); ok {
		t.Error("restore kept a secret of the previous state")
	}
	if other.State().SecretCount() != 5 {
		t.Errorf("count %d", other.State().SecretCount())
	}
}

func TestSnapshotEmpty(t *testing.T) {
	data := persist(t, fsm.New(nil))
	f := fsm.New(nil)
	put(t, f, "s1", "p")
	if err := f.Restore(nopCloser(data)); err != nil {
		t.Fatal(err)
	}
	if f.State().SecretCount() != 0 || f.AppliedIndex() != 0 {
		t.Errorf("count %d index %d", f.State().SecretCount(), f.AppliedIndex())
	}
}

func TestSnapshotCorrupt(t *testing.T) {
	src := fsm.New(nil)
	mixedWorkload(t, src)
	data := persist(t, src)
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines) < 10 {
		t.Fatalf("only %d lines", len(lines))
	}
	join := func(ls ...[]byte) []byte { return bytes.Join(ls, nil) }
	tests := map[string][]byte{
		"empty":              {},
		"half a header":      data[:len(lines[0])/2],
		"header only":        lines[0],
		"cut mid-stream":     data[:len(data)/2],
		"cut mid-record":     data[:len(lines[0])+len(lines[1])/2],
		"no trailer":         data[:len(data)-len(lines[len(lines)-2])-len(lines[len(lines)-1])],
		"one byte short":     data[:len(data)-2],
		"record dropped":     join(join(lines[:3]...), join(lines[4:]...)),
		"record duplicated":  join(join(lines[:4]...), join(lines[3:]...)),
		"wrong format":       append([]byte(`{"format":"keyward-fsm-v0","index":1}`+"\n"), data[len(lines[0]):]...),
		"empty record":       join(lines[0], []byte("{}\n"), join(lines[1:]...)),
		"garbage":            []byte("not a snapshot"),
		"record not an obj":  join(lines[0], []byte("[1,2]\n"), join(lines[1:]...)),
		"trailer says fewer": join(join(lines[:len(lines)-2]...), []byte(`{"end":1}`+"\n")),
	}
	for name, stream := range tests {
		t.Run(name, func(t *testing.T) {
			f := fsm.New(nil)
			put(t, f, "keep", "keep")
			before := f.State()
			applied := f.Applied()
			if err := f.Restore(nopCloser(stream)); err == nil {
				t.Fatal("restore succeeded")
			}
			if f.State() != before {
				t.Error("a failed restore changed the state")
			}
			select {
			case <-applied:
				t.Error("a failed restore fired Applied")
			default:
			}
		})
	}
}

func TestSnapshotPersistFailureCancels(t *testing.T) {
	src := fsm.New(nil)
	putN(t, src, "s1", "p", 3)
	for i := range 2000 { // larger than the writer's buffer, so a write reaches the sink early
		put(t, src, fmt.Sprintf("id%04d", i), fmt.Sprintf("bulk/%04d", i))
	}
	snap, _ := src.Snapshot()
	sink := &failingSink{limit: 1000}
	if err := snap.Persist(sink); err == nil {
		t.Fatal("persist into a failing sink succeeded")
	}
	if sink.cancelled != 1 || sink.closed != 0 {
		t.Errorf("sink cancelled %d closed %d, want cancel only", sink.cancelled, sink.closed)
	}
}

// TestSnapshotIsPointInTime: Snapshot captures the view at the time of the call; writes before
// Persist do not leak into it.
func TestSnapshotIsPointInTime(t *testing.T) {
	f := fsm.New(nil)
	ids := mixedWorkload(t, f)
	atSnapshot := f.State()
	want := snapshotBytes(t, atSnapshot)
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}

	putN(t, f, "s1", "prod/db", 5)
	mustOK(t, f, fsm.CmdPurgeSecret, &fsm.PurgeSecret{SecretID: "s2"})
	mustOK(t, f, fsm.CmdDestroyVersions, &fsm.DestroyVersions{SecretID: "s1", Versions: []uint64{14}, At: baseTime})
	put(t, f, "later", "later")
	mustOK(t, f, fsm.CmdDeletePolicy, &fsm.DeletePolicy{ID: "pol-1"})
	mustOK(t, f, fsm.CmdAppendAudit, auditBatch(100, 5))

	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sink.Bytes(), want) {
		t.Fatal("persisted snapshot includes writes made after Snapshot")
	}
	g := fsm.New(nil)
	if err := g.Restore(nopCloser(sink.Bytes())); err != nil {
		t.Fatal(err)
	}
	assertSameState(t, atSnapshot, g.State(), append(ids, "later"))
	if _, ok := g.State().SecretByID("later"); ok {
		t.Error("snapshot holds a secret created after it")
	}
	if _, ok := g.State().SecretByID("s2"); !ok {
		t.Error("snapshot lost a secret purged after it")
	}
	if g.AppliedIndex() == f.AppliedIndex() {
		t.Error("snapshot index moved")
	}
}

// randomCommands generates a reproducible stream of commands, mostly valid, steered by the
// state of f (which the caller applies them to).
type randomCommands struct {
	rng    *rand.Rand
	secret []string // ids ever created
	paths  map[string]string
	next   int
	at     int64
}

func newRandomCommands(seed int64) *randomCommands {
	return &randomCommands{rng: rand.New(rand.NewSource(seed)), paths: map[string]string{}, at: baseTime}
}

func (g *randomCommands) pick() string {
	if len(g.secret) == 0 || g.rng.Intn(10) == 0 {
		return fmt.Sprintf("ghost%d", g.rng.Intn(3)) // never created: NotFound
	}
	return g.secret[g.rng.Intn(len(g.secret))]
}

func (g *randomCommands) command(st *fsm.State) []byte {
	g.at += int64(g.rng.Intn(1000) + 1)
	switch op := g.rng.Intn(100); {
	case op < 50: // put
		var id, path string
		var expect uint64
		if len(g.secret) == 0 || g.rng.Intn(5) == 0 {
			id = fmt.Sprintf("sec%03d", g.next)
			path = fmt.Sprintf("%c/%03d", 'a'+g.rng.Intn(3), g.rng.Intn(40))
			g.next++
			g.secret = append(g.secret, id)
			g.paths[id] = path
		} else {
			id = g.secret[g.rng.Intn(len(g.secret))]
			path = g.paths[id]
		}
		if s, ok := st.SecretByPath(path); ok {
			expect = s.LatestVersion
		}
		if g.rng.Intn(15) == 0 {
			expect++ // stale proposer
		}
		c := putCmd(id, path, expect)
		c.At = g.at
		c.Ciphertext = make([]byte, g.rng.Intn(64))
		g.rng.Read(c.Ciphertext)
		if g.rng.Intn(4) == 0 {
			cas := expect
			if g.rng.Intn(3) == 0 {
				cas = uint64(g.rng.Intn(5))
			}
			c.CAS = &cas
		}
		switch g.rng.Intn(12) {
		case 0:
			c.MaxVersions = uint32(2 + g.rng.Intn(6))
		case 1:
			c.MaxVersions = 1 // invalid
		case 2:
			c.Description = str(fmt.Sprintf("d%d", g.rng.Intn(100)))
		}
		return fsm.MustEncode(fsm.CmdPutVersion, c)
	case op < 65: // destroy
		id := g.pick()
		var vs []uint64
		for range 1 + g.rng.Intn(3) {
			vs = append(vs, uint64(1+g.rng.Intn(20)))
		}
		return fsm.MustEncode(fsm.CmdDestroyVersions, &fsm.DestroyVersions{SecretID: id, Versions: vs, At: g.at})
	case op < 73:
		return fsm.MustEncode(fsm.CmdDeleteSecret, &fsm.DeleteSecret{SecretID: g.pick(), At: g.at})
	case op < 81:
		return fsm.MustEncode(fsm.CmdRestoreSecret, &fsm.RestoreSecret{SecretID: g.pick(), At: g.at})
	case op < 85:
		return fsm.MustEncode(fsm.CmdPurgeSecret, &fsm.PurgeSecret{SecretID: g.pick()})
	case op < 90:
		p := policy(fmt.Sprintf("pol%d", g.rng.Intn(8)))
		p.CreatedAt = g.at
		return fsm.MustEncode(fsm.CmdPutPolicy, &fsm.PutPolicy{Policy: p})
	case op < 93:
		return fsm.MustEncode(fsm.CmdDeletePolicy, &fsm.DeletePolicy{ID: fmt.Sprintf("pol%d", g.rng.Intn(8))})
	case op < 98:
		return fsm.MustEncode(fsm.CmdAppendAudit, auditBatch(g.rng.Intn(1000), g.rng.Intn(4)))
	default:
		return []byte{byte(fsm.FlagIgnoreUnknown) | 0x70, '{', '}'} // skipped by every node
	}
}

func TestDeterminism(t *testing.T) {
	for _, seed := range []int64{1, 2, 42, 2024} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			a, b := fsm.New(nil), fsm.New(nil)
			gen := newRandomCommands(seed)
			var log [][]byte
			var failed int
			for i := uint64(1); i <= 1500; i++ {
				data := gen.command(a.State())
				log = append(log, data)
				ra, err := a.ApplyCommand(i, data)
				if err != nil {
					t.Fatalf("entry %d: %v", i, err)
				}
				out := b.Apply(&raft.Log{Index: i, Type: raft.LogCommand, Data: data})
				rb, ok := out.(*fsm.Result)
				if !ok {
					t.Fatalf("entry %d: Apply returned %#v", i, out)
				}
				if (ra.Err == nil) != (rb.Err == nil) || (ra.Err != nil && ra.Err.Error() != rb.Err.Error()) {
					t.Fatalf("entry %d: verdicts differ: %v vs %v", i, ra.Err, rb.Err)
				}
				if ra.Err != nil {
					failed++
				}
			}
			if failed == 0 || failed > 1200 {
				t.Errorf("%d of 1500 commands failed: the generator is not exercising both paths", failed)
			}
			sa, sb := persist(t, a), persist(t, b)
			if !bytes.Equal(sa, sb) {
				t.Fatal("replicas diverged: snapshots differ")
			}
			// Invariants hold for every secret that survived.
			st := a.State()
			for _, id := range gen.secret {
				if _, ok := st.SecretByID(id); ok {
					checkVersionInvariants(t, st, id)
				}
			}
			// Replaying the recorded log on a third node, and restoring the snapshot on a fourth,
			// give the same bytes again.
			c := fsm.New(nil)
			for i, data := range log {
				if _, err := c.ApplyCommand(uint64(i+1), data); err != nil {
					t.Fatal(err)
				}
			}
			d := fsm.New(nil)
			if err := d.Restore(nopCloser(sa)); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(persist(t, c), sa) || !bytes.Equal(persist(t, d), sa) {
				t.Fatal("replay or restore diverged")
			}
			// The generator itself is reproducible.
			gen2 := newRandomCommands(seed)
			e := fsm.New(nil)
			for i := range 50 {
				if data := gen2.command(e.State()); !bytes.Equal(data, log[i]) {
					t.Fatalf("generator not reproducible at %d", i)
				}
				if _, err := e.ApplyCommand(uint64(i+1), log[i]); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
