package api

import (
	"encoding/base64"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/keyward/keyward/internal/jsontext"
)

// secretJSON is the body of a secret read, written by hand rather than through encoding/json:
// it is the hottest response, and this way the plaintext goes from the decrypted bytes into one
// pooled buffer that is wiped after the write, instead of into strings the garbage collector
// frees whenever it likes. The body decodes as wire.SecretResponse.
type secretJSON struct {
	Path, SecretID, VersionID, State string
	Version                          uint64
	CreatedAt                        time.Time
	Plaintext                        []byte // value if valid UTF-8, else value_base64
}

var responseBufs = sync.Pool{New: func() any { return new([]byte) }}

// writeSecret sends v with status 200 and wipes the buffer it used.
func (s *Server) writeSecret(w http.ResponseWriter, v secretJSON) {
	bp := responseBufs.Get().(*[]byte)
	// Room for the whole body up front: a buffer that grew while holding plaintext would leave
	// the old array, unwiped, to the garbage collector. An escaped byte takes at most 6.
	n := len(v.Path) + len(v.SecretID) + len(v.VersionID) + len(v.State)
	b := slices.Grow((*bp)[:0], 6*n+256+max(6*len(v.Plaintext), base64.StdEncoding.EncodedLen(len(v.Plaintext))))
	b = append(b, `{"path":`...)
	b = jsontext.AppendString(b, v.Path)
	b = append(b, `,"secret_id":`...)
	b = jsontext.AppendString(b, v.SecretID)
	b = strconv.AppendUint(append(b, `,"version":`...), v.Version, 10)
	b = append(b, `,"version_id":`...)
	b = jsontext.AppendString(b, v.VersionID)
	b = append(b, `,"state":`...)
	b = jsontext.AppendString(b, v.State)
	b = append(b, `,"created_at":"`...)
	b = append(v.CreatedAt.AppendFormat(b, time.RFC3339Nano), '"')
	if utf8.Valid(v.Plaintext) {
		b = jsontext.AppendText(append(b, `,"value":`...), v.Plaintext)
	} else {
		b = append(base64.StdEncoding.AppendEncode(append(b, `,"value_base64":"`...), v.Plaintext), '"')
	}
	b = append(b, "}\n"...)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write(b); err != nil {
		s.d.Log.Debug("write response", "err", err)
	}
	clear(b)
	if cap(b) <= 256<<10 {
		*bp = b
		responseBufs.Put(bp)
	}
}
