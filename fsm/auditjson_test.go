package fsm

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
)

// randomAudit fills r's fields through reflection, each string from alphabet or empty, each
// number zero or not, so a field added to AuditRecord is exercised without touching the test.
func randomAudit(rng *rand.Rand, alphabet []rune) AuditRecord {
	var r AuditRecord
	v := reflect.ValueOf(&r).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		empty := rng.IntN(4) == 0
		switch f.Kind() {
		case reflect.String:
			if !empty {
				s := make([]rune, 1+rng.IntN(12))
				for j := range s {
					s[j] = alphabet[rng.IntN(len(alphabet))]
				}
				f.SetString(string(s))
			}
		case reflect.Uint64:
			if !empty {
				f.SetUint(rng.Uint64() >> rng.IntN(64))
			}
		case reflect.Int64:
			if !empty {
				f.SetInt(int64(rng.Uint64()))
			}
		case reflect.Bool:
			f.SetBool(!empty)
		default:
			panic("randomAudit: add a case for " + f.Kind().String())
		}
	}
	return r
}

// AppendAuditJSON must write exactly what encoding/json does: the hash chain covers the bytes.
func TestAppendAuditJSONMatchesMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	plain := []rune("abcXYZ019-_./:@ +=")
	odd := append([]rune(`"\<>&`+"\n\t\b\f\r\x00\x1f\x7f"), 'é', '\u2028', '\u2029', '😀', '\uFFFD')
	for i := range 20000 {
		alphabet := plain
		if i%2 == 1 {
			alphabet = append(append([]rune{}, plain...), odd...)
		}
		r := randomAudit(rng, alphabet)
		want, err := json.Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendAuditJSON([]byte("prefix"), &r); !bytes.Equal(got[6:], want) || string(got[:6]) != "prefix" {
			t.Fatalf("record %+v:\n got %s\nwant %s", r, got[6:], want)
		}
	}
	// Invalid UTF-8 goes through encoding/json too.
	r := AuditRecord{ID: "a\xffb", Action: "READ"}
	want, _ := json.Marshal(&r)
	if got := AppendAuditJSON(nil, &r); !bytes.Equal(got, want) {
		t.Fatalf("invalid UTF-8: got %s, want %s", got, want)
	}
}

func FuzzAppendAuditJSON(f *testing.F) {
	f.Add("id", "bench/1", "admin", "<&>", uint64(3), int64(-1), true)
	f.Fuzz(func(t *testing.T, id, path, principal, reason string, seq uint64, at int64, ok bool) {
		r := AuditRecord{ID: id, Path: path, PrincipalID: principal, Reason: reason, NodeSeq: seq,
			AccessedAt: at, Success: ok, Action: "READ"}
		want, _ := json.Marshal(&r)
		if got := AppendAuditJSON(nil, &r); !bytes.Equal(got, want) {
			t.Fatalf("got %s, want %s", got, want)
		}
	})
}

func BenchmarkAppendAuditJSON(b *testing.B) {
	r := AuditRecord{ID: "3a42ea74-afe8-46f9-b781-84ca4263862f", NodeID: "n1", SecretID: "69989285-31ef-4e20-9242-54434ca41888",
		Path: "bench/286", VersionID: "c8c64f18-8e0c-42ee-8a0e-1a879b741b17", PrincipalType: "USER", PrincipalID: "admin",
		AuthMethod: "token", Action: "READ", IPAddress: "127.0.0.1", Success: true,
		RequestID: "780c7df6-1261-40f4-8c49-a0bd5c537905", AccessedAt: 1795776343873500046}
	b.Run("append", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf = AppendAuditJSON(buf[:0], &r)
		}
	})
	b.Run("marshal", func(b *testing.B) {
		for b.Loop() {
			_, _ = json.Marshal(&r)
		}
	})
}
