package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math/rand/v2"
	"net/http/httptest"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/keyward/keyward/api/wire"
)

// The hand-written body of a secret read is byte for byte what encoding/json makes of
// wire.SecretResponse, for any value: text with escapes, unicode, line separators, or
// binary that goes out as value_base64.
func TestWriteSecretMatchesEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	pieces := []string{"a", "Z", "0", " ", "\"", "\\", "<", ">", "&", "\n", "\r", "\t", "\b", "\f",
		"\x00", "\x1f", "\x7f", "é", "\u2028", "\u2029", "😀", "\uFFFD", "\xff", "\xc3"}
	s := New(Deps{})
	for i := range 5000 {
		var value []byte
		size := rng.IntN(40)
		if i%1000 == 0 {
			size = 20000 // large values too: the buffer is sized before any plaintext goes in
		}
		for range size {
			value = append(value, pieces[rng.IntN(len(pieces))]...)
		}
		path := "app/db-" + string(pieces[rng.IntN(len(pieces))])
		v := secretJSON{Path: path, SecretID: "sid", Version: rng.Uint64N(1000), VersionID: "vid",
			State: "CURRENT", CreatedAt: time.Unix(0, rng.Int64()).UTC(), Plaintext: bytes.Clone(value)}
		want := wire.SecretResponse{Path: v.Path, SecretID: v.SecretID, Version: v.Version,
			VersionID: v.VersionID, State: v.State, CreatedAt: v.CreatedAt}
		if utf8.Valid(value) {
			str := string(value)
			want.Value = &str
		} else {
			b64 := base64.StdEncoding.EncodeToString(value)
			want.ValueBase64 = &b64
		}
		var wantBody bytes.Buffer
		if err := json.NewEncoder(&wantBody).Encode(want); err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		s.writeSecret(rec, v)
		if !bytes.Equal(rec.Body.Bytes(), wantBody.Bytes()) {
			t.Fatalf("value %q:\n got %s\nwant %s", value, rec.Body.Bytes(), wantBody.Bytes())
		}
		if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("status %d, content type %q", rec.Code, rec.Header().Get("Content-Type"))
		}
	}
}
