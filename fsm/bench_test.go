package fsm_test

import (
	"encoding/binary"
	"fmt"
	"reflect"
	"strconv"
	"testing"

	"github.com/keyward/keyward/fsm"
)

// putEncoder builds CmdPutVersion entries with a 1 KiB ciphertext by appending into reused
// buffers, so a benchmark measures Apply (which decodes the entry) rather than the encoder.
// TestPutEncoderMatchesEncode checks it against fsm.Encode.
type putEncoder struct {
	buf, meta []byte
	ct, wk    []byte
}

func newPutEncoder() *putEncoder {
	ct := make([]byte, 1024)
	for i := range ct {
		ct[i] = byte(i * 31)
	}
	wk := make([]byte, 184) // roughly a KMS-wrapped data key
	for i := range wk {
		wk[i] = byte(i * 7)
	}
	return &putEncoder{ct: ct, wk: wk}
}

func (e *putEncoder) encode(id string, expect uint64) []byte {
	m := append(e.meta[:0], `{"secret_id":"`...)
	m = append(m, id...)
	m = append(m, `","path":"bench/`...)
	m = append(m, id...)
	m = append(m, `","expect":`...)
	m = strconv.AppendUint(m, expect, 10)
	m = append(m, `,"version_id":"`...)
	m = append(m, id...)
	m = append(m, "-v"...)
	m = strconv.AppendUint(m, expect+1, 10)
	m = append(m, `","kms_key_id":"local:bench","kms_provider":"local","by":"bench","at":`...)
	m = strconv.AppendInt(m, baseTime+int64(expect), 10)
	m = append(m, '}')
	e.meta = m
	b := append(e.buf[:0], byte(fsm.CmdPutVersion))
	for _, part := range [][]byte{m, e.ct, e.wk} {
		b = binary.AppendUvarint(b, uint64(len(part)))
		b = append(b, part...)
	}
	e.buf = b
	return b
}

func TestPutEncoderMatchesEncode(t *testing.T) {
	e := newPutEncoder()
	got := e.encode("sec42", 7)
	var viaEncoder, viaEncode fsm.PutVersion
	if err := fsm.DecodePayload(got[1:], &viaEncoder); err != nil {
		t.Fatal(err)
	}
	want := fsm.MustEncode(fsm.CmdPutVersion, &fsm.PutVersion{
		SecretID: "sec42", Path: "bench/sec42", Expect: 7, VersionID: "sec42-v8",
		Ciphertext: e.ct, WrappedKey: e.wk, KMSKeyID: "local:bench", KMSProvider: "local",
		By: "bench", At: baseTime + 7,
	})
	if err := fsm.DecodePayload(want[1:], &viaEncode); err != nil {
		t.Fatal(err)
	}
	if got[0] != want[0] || !reflect.DeepEqual(viaEncoder, viaEncode) || len(viaEncoder.Ciphertext) != 1024 {
		t.Fatalf("encoder mismatch:\n%+v\n%+v", viaEncoder, viaEncode)
	}
	// And the FSM accepts it.
	f := fsm.New(nil)
	res, err := f.ApplyCommand(1, e.encode("sec42", 0))
	if err != nil || res.Err != nil || len(res.Version.Ciphertext) != 1024 {
		t.Fatalf("apply: %+v %v", res, err)
	}
}

func benchApply(b *testing.B, f *fsm.FSM, data []byte) {
	res, err := f.ApplyCommand(f.AppliedIndex()+1, data)
	if err != nil {
		b.Fatal(err)
	}
	if res.Err != nil {
		b.Fatal(res.Err)
	}
}

// BenchmarkApplyPutVersion writes new versions round-robin across 4096 secrets.
func BenchmarkApplyPutVersion(b *testing.B) {
	const secrets = 4096
	f := fsm.New(nil)
	e := newPutEncoder()
	ids := make([]string, secrets)
	latest := make([]uint64, secrets)
	for i := range ids {
		ids[i] = fmt.Sprintf("sec%05d", i)
		benchApply(b, f, e.encode(ids[i], 0))
		latest[i] = 1
	}
	b.ReportAllocs()
	b.SetBytes(1024)
	for i := 0; b.Loop(); i++ {
		k := i % secrets
		benchApply(b, f, e.encode(ids[k], latest[k]))
		latest[k]++
	}
}

// BenchmarkApplyPutVersionHotSecret writes new versions of one secret (retention shreds one
// old version per write once the window is full).
func BenchmarkApplyPutVersionHotSecret(b *testing.B) {
	f := fsm.New(nil)
	e := newPutEncoder()
	for i := range 1000 { // other secrets around it
		benchApply(b, f, e.encode(fmt.Sprintf("other%04d", i), 0))
	}
	latest := uint64(0)
	b.ReportAllocs()
	b.SetBytes(1024)
	for b.Loop() {
		benchApply(b, f, e.encode("hot", latest))
		latest++
	}
	if v, ok := f.State().NewestInState("hot", fsm.StateCurrent); !ok || v.Number != latest {
		b.Fatalf("hot secret at %v, want %d", v, latest)
	}
}

// BenchmarkList100 lists one page of 100 from a state of 10,000 secrets in 10 prefixes.
func BenchmarkList100(b *testing.B) {
	f := fsm.New(nil)
	e := newPutEncoder()
	for i := range 10000 {
		benchApply(b, f, e.encode(fmt.Sprintf("p%d/%05d", i%10, i), 0))
	}
	st := f.State()
	b.ReportAllocs()
	for b.Loop() {
		page, more := st.List("bench/p5/", "bench/p5/05000", 100)
		if len(page) != 100 || !more {
			b.Fatalf("page of %d, more %v", len(page), more)
		}
	}
}
