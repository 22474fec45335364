package fsm_test

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/keyward/keyward/fsm"
)

func TestNewFSMIsEmpty(t *testing.T) {
	f := fsm.New(nil)
	st := f.State()
	if st.Index() != 0 || f.AppliedIndex() != 0 || st.SecretCount() != 0 || st.AuditSeq() != 0 {
		t.Errorf("new state index %d count %d seq %d", st.Index(), st.SecretCount(), st.AuditSeq())
	}
	if got, more := st.List("", "", 10); len(got) != 0 || more {
		t.Errorf("List = %v, %v", got, more)
	}
	if len(policyIDs(st)) != 0 || len(collectAudit(st, 0)) != 0 {
		t.Error("new state has policies or audit records")
	}
}

func TestImmutability(t *testing.T) {
	f := fsm.New(nil)
	first := put(t, f, "s1", "p")
	v1 := *first.Version
	s1 := *first.Secret
	old := f.State()

	put(t, f, "s1", "p") // v1 -> PREVIOUS in the new state only
	mid := f.State()
	putN(t, f, "s1", "p", 14) // retention drops v1
	mustOK(t, f, fsm.CmdDeleteSecret, &fsm.DeleteSecret{SecretID: "s1", At: baseTime})
	mustOK(t, f, fsm.CmdPutPolicy, &fsm.PutPolicy{Policy: policy("p1")})
	mustOK(t, f, fsm.CmdAppendAudit, auditBatch(0, 3))

	// The view taken after the first write still shows version 1 as CURRENT with its value.
	if old.Index() != 1 {
		t.Errorf("old index %d", old.Index())
	}
	sec, ok := old.SecretByPath("p")
	if !ok || *sec != s1 || sec.CurrentVersion != 1 || sec.Deleted() {
		t.Errorf("old secret = %+v", sec)
	}
	if *first.Secret != s1 || !reflect.DeepEqual(*first.Version, v1) {
		t.Error("a returned Result was modified by later writes")
	}
	v, _ := old.Version("s1", 1)
	if v.State != fsm.StateCurrent || v.Destroyed || !bytes.Equal(v.Ciphertext, v1.Ciphertext) {
		t.Errorf("old version 1 = %+v", v)
	}
	if n := len(old.Versions("s1")); n != 1 {
		t.Errorf("old state has %d versions", n)
	}
	if cur, ok := old.NewestInState("s1", fsm.StateCurrent); !ok || cur.Number != 1 {
		t.Errorf("old CURRENT = %+v", cur)
	}
	if got, _ := old.List("", "", 10); len(got) != 1 {
		t.Errorf("old List = %v", ids(got))
	}
	if old.AuditSeq() != 0 || len(collectAudit(old, 0)) != 0 || len(policyIDs(old)) != 0 {
		t.Error("old state sees later policies or audit")
	}
	// The intermediate view shows v2 CURRENT, v1 PREVIOUS with its value.
	if v, _ := mid.Version("s1", 1); v.State != fsm.StatePrevious || v.Destroyed {
		t.Errorf("mid version 1 = %+v", v)
	}
	checkVersionInvariants(t, mid, "s1")
	// The newest view.
	cur := f.State()
	if v, _ := cur.Version("s1", 1); !v.Destroyed || v.Ciphertext != nil {
		t.Errorf("current version 1 = %+v", v)
	}
	if s, _ := cur.SecretByID("s1"); !s.Deleted() {
		t.Error("secret not deleted in the newest view")
	}
}

func TestUnknownCommand(t *testing.T) {
	f := fsm.New(nil)
	put(t, f, "s1", "p")
	before := f.State()

	// Unknown type without the flag: an error, and nothing happens at all.
	for _, typ := range []byte{0, 7, 15, 18, 31, 33, 99, 0x7f} {
		res, err := f.ApplyCommand(2, append([]byte{typ}, `{"x":1}`...))
		if err == nil || res != nil {
			t.Errorf("type %d: res %v err %v, want error", typ, res, err)
		}
		if f.State() != before {
			t.Errorf("type %d: state changed", typ)
		}
	}

	// With FlagIgnoreUnknown: skipped, only the index advances.
	res, err := f.ApplyCommand(2, append([]byte{99 | byte(fsm.FlagIgnoreUnknown)}, `{"x":1}`...))
	if err != nil || res == nil || res.Err != nil || res.Index != 2 {
		t.Fatalf("flagged unknown: res %+v err %v", res, err)
	}
	if res.Secret != nil || res.Version != nil {
		t.Errorf("flagged unknown returned data %+v", res)
	}
	assertUnchangedButIndex(t, before, f.State())

	// Even with a payload that is not JSON: the node does not know how to read it anyway.
	before = f.State()
	if _, err := f.ApplyCommand(3, []byte{0xff, 0x00, 0x01}); err != nil {
		t.Fatalf("flagged unknown with binary payload: %v", err)
	}
	assertUnchangedButIndex(t, before, f.State())

	// A known type with the flag is applied normally.
	res, err = f.ApplyCommand(4, fsm.MustEncode(fsm.CmdPutVersion|fsm.FlagIgnoreUnknown, putCmd("s1", "p", 1)))
	if err != nil || res.Err != nil || res.Version.Number != 2 {
		t.Fatalf("flagged known command: %+v %v", res, err)
	}
}

func TestNoopCommand(t *testing.T) {
	f := fsm.New(nil)
	mixedWorkload(t, f)
	for _, typ := range []fsm.CommandType{fsm.CmdNoop, fsm.CmdNoop | fsm.FlagIgnoreUnknown} {
		before := f.State()
		res := mustOK(t, f, typ, &fsm.Noop{})
		if res.Secret != nil || res.Version != nil || res.Destroyed != nil || res.AuditSeq != 0 {
			t.Errorf("noop returned data %+v", res)
		}
		assertUnchangedButIndex(t, before, f.State())
	}
}

func TestUndecodableCommand(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"empty entry", nil},
		{"type only", []byte{byte(fsm.CmdPutVersion)}},
		{"not json", append([]byte{byte(fsm.CmdPutVersion)}, "not json"...)},
		{"truncated json", append([]byte{byte(fsm.CmdDeleteSecret)}, `{"secret_id":"s1"`...)},
		{"wrong field type", append([]byte{byte(fsm.CmdDestroyVersions)}, `{"secret_id":"s1","versions":"all"}`...)},
		{"flag does not excuse a bad known payload", append([]byte{byte(fsm.CmdPutVersion | fsm.FlagIgnoreUnknown)}, "{"...)},
		{"unknown type", append([]byte{120}, "{}"...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := fsm.New(nil)
			put(t, f, "s1", "p")
			before := f.State()
			applied := f.Applied()

			res, err := f.ApplyCommand(2, tc.data)
			if err == nil || res != nil {
				t.Fatalf("ApplyCommand = %+v, %v; want an error", res, err)
			}
			if f.State() != before {
				t.Fatal("an undecodable entry changed the state")
			}

			// Through raft it stops the node.
			var got any
			func() {
				defer func() { got = recover() }()
				f.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: tc.data})
			}()
			if got == nil {
				t.Fatal("Apply did not panic")
			}
			if msg := fmt.Sprint(got); !strings.Contains(msg, "index 2") {
				t.Errorf("panic %q does not name the index", msg)
			}
			if f.State() != before || f.AppliedIndex() != 1 {
				t.Error("state changed")
			}
			select {
			case <-applied:
				t.Error("Applied fired without an apply")
			default:
			}
		})
	}
}

func TestRaftApply(t *testing.T) {
	f := fsm.New(nil)
	out := f.Apply(&raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: fsm.MustEncode(fsm.CmdPutVersion, putCmd("s1", "p", 0))})
	res, ok := out.(*fsm.Result)
	if !ok || res.Err != nil || res.Index != 1 || res.Version.Number != 1 {
		t.Fatalf("Apply = %#v", out)
	}
	// A business failure is returned, not panicked.
	out = f.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: fsm.MustEncode(fsm.CmdPutVersion, putCmd("s1", "p", 0))})
	if res, ok := out.(*fsm.Result); !ok || res.Index != 2 || conflict(t, res.Err) == nil {
		t.Fatalf("Apply = %#v", out)
	}
	if f.AppliedIndex() != 2 {
		t.Fatalf("applied index %d", f.AppliedIndex())
	}

	st := f.State()
	for _, typ := range []raft.LogType{raft.LogNoop, raft.LogBarrier, raft.LogConfiguration, raft.LogAddPeerDeprecated, raft.LogRemovePeerDeprecated} {
		// Even with data that would be a valid command.
		out := f.Apply(&raft.Log{Index: 3, Type: typ, Data: fsm.MustEncode(fsm.CmdPutVersion, putCmd("s1", "p", 1))})
		if out != nil {
			t.Errorf("%v: Apply = %#v, want nil", typ, out)
		}
		if f.State() != st {
			t.Errorf("%v: state changed", typ)
		}
	}
}

func TestApplied(t *testing.T) {
	fired := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	tests := []struct {
		name  string
		apply func(t *testing.T, f *fsm.FSM)
	}{
		{"successful command", func(t *testing.T, f *fsm.FSM) { put(t, f, "s2", "q") }},
		{"failed command", func(t *testing.T, f *fsm.FSM) {
			mustFail(t, f, fsm.CmdDeleteSecret, &fsm.DeleteSecret{SecretID: "nope"}, fsm.ErrNotFound)
		}},
		{"skipped unknown command", func(t *testing.T, f *fsm.FSM) {
			if _, err := f.ApplyCommand(f.AppliedIndex()+1, []byte{0xfe}); err != nil {
				t.Fatal(err)
			}
		}},
		{"restore", func(t *testing.T, f *fsm.FSM) {
			if err := f.Restore(nopCloser(snapshotBytes(t, f.State()))); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := fsm.New(nil)
			put(t, f, "s1", "p")
			ch := f.Applied()
			if ch2 := f.Applied(); ch2 != ch {
				t.Error("Applied returned different channels without an apply")
			}
			if fired(ch) {
				t.Fatal("Applied closed before the next apply")
			}
			tc.apply(t, f)
			if !fired(ch) {
				t.Fatal("Applied not closed after the apply")
			}
			next := f.Applied()
			if fired(next) {
				t.Fatal("the next Applied channel is already closed")
			}
			put(t, f, "s3", "r")
			if !fired(next) {
				t.Fatal("the next Applied channel did not close")
			}
		})
	}
}

// TestAppliedWaiter: a goroutine waiting for an index wakes up once it is applied.
func TestAppliedWaiter(t *testing.T) {
	f := fsm.New(nil)
	const target = 20
	done := make(chan uint64)
	ready := make(chan struct{})
	go func() {
		first := true
		for {
			ch := f.Applied()
			if first {
				close(ready)
				first = false
			}
			if idx := f.AppliedIndex(); idx >= target {
				done <- idx
				return
			}
			<-ch
		}
	}()
	<-ready
	for i := range target {
		put(t, f, fmt.Sprintf("s%d", i), fmt.Sprintf("p/%d", i))
	}
	if got := <-done; got != target {
		t.Errorf("waiter saw index %d", got)
	}
}

func TestConcurrentReaders(t *testing.T) {
	f := fsm.New(nil)
	const writes = 400
	const secrets = 20
	stop := make(chan struct{})
	errs := make(chan error, 16)
	var wg sync.WaitGroup

	reader := func(id int) {
		defer wg.Done()
		var lastIndex uint64
		for iter := 0; ; iter++ {
			st := f.State()
			if st.Index() < lastIndex {
				errs <- fmt.Errorf("reader %d: index went back %d -> %d", id, lastIndex, st.Index())
				return
			}
			lastIndex = st.Index()
			all, _ := st.List("", "", 1000)
			page, more := st.List("s/", "", 5)
			if len(page) > 5 || (more && len(page) != 5) {
				errs <- fmt.Errorf("reader %d: page %d more %v", id, len(page), more)
				return
			}
			for _, s := range all {
				if err := versionInvariants(st, s.ID); err != nil {
					errs <- fmt.Errorf("reader %d at index %d: %w", id, st.Index(), err)
					return
				}
				if cur, ok := st.NewestInState(s.ID, fsm.StateCurrent); !ok || cur.Number != s.CurrentVersion {
					errs <- fmt.Errorf("reader %d: %s has no CURRENT", id, s.ID)
					return
				}
			}
			st.Audit(0, func(*fsm.AuditRecord) bool { return true })
			_ = f.AppliedIndex()
			select {
			case <-stop:
				if iter > 0 {
					return
				}
			default:
			}
		}
	}
	for i := range 4 {
		wg.Add(1)
		go reader(i)
	}

	// Raft persists snapshots concurrently with Apply.
	var snapWant, snapGot []byte
	snapDone := make(chan struct{})
	for i := range writes {
		id := fmt.Sprintf("id%02d", i%secrets)
		put(t, f, id, "s/"+id)
		if i%50 == 0 {
			mustOK(t, f, fsm.CmdAppendAudit, auditBatch(i, 2))
		}
		if i == writes/2 {
			snapWant = snapshotBytes(t, f.State())
			snap, err := f.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				defer close(snapDone)
				sink := &memSink{}
				if err := snap.Persist(sink); err != nil {
					errs <- err
				}
				snap.Release()
				snapGot = sink.Bytes()
			}()
		}
	}
	<-snapDone
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if !bytes.Equal(snapWant, snapGot) {
		t.Error("snapshot persisted during writes differs from the captured state")
	}
	for i := range secrets {
		checkVersionInvariants(t, f.State(), fmt.Sprintf("id%02d", i))
	}
}

// The FSM is what keyward hands to raft.NewRaft.
var (
	_ raft.FSM                = (*fsm.FSM)(nil)
	_ raft.ConfigurationStore = (*fsm.FSM)(nil)
)

func TestStoreConfiguration(t *testing.T) {
	f := fsm.New(nil)
	mixedWorkload(t, f)
	cfg := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: "n1", Address: "127.0.0.1:1"}}}

	// A configuration entry at the next index moves only the applied index.
	before := f.State()
	applied := f.Applied()
	f.StoreConfiguration(before.Index()+1, cfg)
	assertUnchangedButIndex(t, before, f.State())
	select {
	case <-applied:
	default:
		t.Error("StoreConfiguration did not fire Applied")
	}

	// Indexes may jump (entries in between were raft no-ops or barriers).
	f.StoreConfiguration(before.Index()+10, cfg)
	if f.AppliedIndex() != before.Index()+10 {
		t.Errorf("applied index %d, want %d", f.AppliedIndex(), before.Index()+10)
	}

	// An index at or below the applied one changes nothing and fires nothing.
	st := f.State()
	applied = f.Applied()
	for _, idx := range []uint64{st.Index(), st.Index() - 1, 0} {
		f.StoreConfiguration(idx, cfg)
		if f.State() != st {
			t.Errorf("StoreConfiguration(%d) at index %d changed the state", idx, st.Index())
		}
	}
	select {
	case <-applied:
		t.Error("Applied fired without progress")
	default:
	}

	// Commands continue after it, and snapshots carry the index.
	res := put(t, f, "after-config", "after-config")
	if res.Index != st.Index()+1 {
		t.Errorf("next command at %d", res.Index)
	}
	g := fsm.New(nil)
	if err := g.Restore(nopCloser(persist(t, f))); err != nil {
		t.Fatal(err)
	}
	if g.AppliedIndex() != f.AppliedIndex() {
		t.Errorf("restored index %d, want %d", g.AppliedIndex(), f.AppliedIndex())
	}
}
