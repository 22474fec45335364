package jsontext

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"unicode/utf8"
)

// Both appenders write what json.Marshal writes for the same string.
func TestAppendMatchesMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	pieces := []string{"a", "Z", "0", " ", "~", "\"", "\\", "<", ">", "&", "\n", "\r", "\t", "\b", "\f",
		"\x00", "\x1f", "\x7f", "é", "\u2028", "\u2029", "😀", "\uFFFD", "\xff", "\xc3"}
	for range 20000 {
		var s string
		for range rng.IntN(16) {
			s += pieces[rng.IntN(len(pieces))]
		}
		want, _ := json.Marshal(s)
		if got := AppendString([]byte("x"), s); !bytes.Equal(got[1:], want) {
			t.Fatalf("AppendString(%q) = %s, want %s", s, got[1:], want)
		}
		if utf8.ValidString(s) {
			if got := AppendText([]byte("x"), []byte(s)); !bytes.Equal(got[1:], want) {
				t.Fatalf("AppendText(%q) = %s, want %s", s, got[1:], want)
			}
		}
		if Verbatim(s) && string(want) != `"`+s+`"` {
			t.Fatalf("Verbatim(%q) but encoding/json writes %s", s, want)
		}
	}
}
