package api

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
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
	b = appendJSONString(b, v.Path)
	b = append(b, `,"secret_id":`...)
	b = appendJSONString(b, v.SecretID)
	b = strconv.AppendUint(append(b, `,"version":`...), v.Version, 10)
	b = append(b, `,"version_id":`...)
	b = appendJSONString(b, v.VersionID)
	b = append(b, `,"state":`...)
	b = appendJSONString(b, v.State)
	b = append(b, `,"created_at":"`...)
	b = append(v.CreatedAt.AppendFormat(b, time.RFC3339Nano), '"')
	if utf8.Valid(v.Plaintext) {
		b = appendJSONText(append(b, `,"value":`...), v.Plaintext)
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

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	return append(append(append(b, '"'), s...), '"')
}

// appendJSONText appends p, valid UTF-8, as a JSON string, byte for byte as encoding/json
// writes it.
func appendJSONText(b, p []byte) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(p); {
		c := p[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, p[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(p[i:])
		if r == '\u2028' || r == '\u2029' { // valid JSON, but not valid JavaScript
			b = append(b, p[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			start = i + size
		}
		i += size
	}
	return append(append(b, p[start:]...), '"')
}
