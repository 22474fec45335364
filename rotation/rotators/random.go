// Package rotators holds the rotators the rotation runner can use: random values, PostgreSQL
// login roles (alternating users) and webhooks for external systems.
package rotators

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"

	"github.com/keyward/keyward/rotation"
)

// Alphabets a random value may be drawn from, by name; any other string is used as the
// alphabet itself.
var alphabets = map[string]string{
	"alnum":   "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
	"alpha":   "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
	"numeric": "0123456789",
	"hex":     "0123456789abcdef",
	"symbols": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&()*+,-.:;<=>?@[]^_{|}~",
}

// RandomSettings configure the random rotator. Either Length characters from Alphabet
// (default 32 from "alnum"), or Bytes random bytes in Encoding (hex, base64, base64url).
// Template, when set, is a JSON object: every string field equal to "{{value}}" (at any
// depth) is replaced by the generated value, and the result is the secret's value.
type RandomSettings struct {
	Length   int             `json:"length,omitempty"`
	Alphabet string          `json:"alphabet,omitempty"`
	Bytes    int             `json:"bytes,omitempty"`
	Encoding string          `json:"encoding,omitempty"`
	Template json.RawMessage `json:"template,omitempty"`
}

// Placeholder is the template string replaced by the generated value.
const Placeholder = "{{value}}"

func decodeStrict(raw json.RawMessage, v any) error {
	if len(raw) == 0 {
		raw = []byte("{}")
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("%w: settings: %v", rotation.ErrInvalidPolicy, err)
	}
	return nil
}

func (s *RandomSettings) check() error {
	switch {
	case s.Bytes != 0 && (s.Length != 0 || s.Alphabet != ""):
		return errors.New("choose either length/alphabet or bytes/encoding")
	case s.Bytes < 0 || s.Bytes > 1024:
		return errors.New("bytes must be 1..1024")
	case s.Length < 0 || s.Length > 4096:
		return errors.New("length must be 1..4096")
	}
	if s.Bytes != 0 {
		switch s.Encoding {
		case "", "hex", "base64", "base64url":
		default:
			return fmt.Errorf("unknown encoding %q (hex, base64, base64url)", s.Encoding)
		}
	} else if s.Encoding != "" {
		return errors.New("encoding goes with bytes")
	}
	if a := s.alphabet(); len(a) < 2 || len(a) > 256 {
		return errors.New("the alphabet needs 2..256 characters")
	}
	if len(s.Template) > 0 {
		var obj map[string]any
		if err := json.Unmarshal(s.Template, &obj); err != nil {
			return fmt.Errorf("template must be a JSON object: %v", err)
		}
		if !bytes.Contains(s.Template, []byte(`"`+Placeholder+`"`)) {
			return fmt.Errorf("template has no %q field", Placeholder)
		}
	}
	return nil
}

func (s *RandomSettings) alphabet() string {
	if a, ok := alphabets[s.Alphabet]; ok {
		return a
	}
	if s.Alphabet == "" {
		return alphabets["alnum"]
	}
	return s.Alphabet
}

// generate returns a new random value as the settings describe.
func (s *RandomSettings) generate() ([]byte, error) {
	var raw []byte
	if s.Bytes > 0 {
		b := make([]byte, s.Bytes)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		switch s.Encoding {
		case "base64":
			raw = []byte(base64.StdEncoding.EncodeToString(b))
		case "base64url":
			raw = []byte(base64.RawURLEncoding.EncodeToString(b))
		default:
			raw = []byte(hex.EncodeToString(b))
		}
		clear(b)
	} else {
		n := s.Length
		if n == 0 {
			n = 32
		}
		var err error
		if raw, err = randomString(n, s.alphabet()); err != nil {
			return nil, err
		}
	}
	if len(s.Template) == 0 {
		return raw, nil
	}
	defer clear(raw)
	return fillTemplate(s.Template, string(raw))
}

// randomString draws n characters uniformly from alphabet.
func randomString(n int, alphabet string) ([]byte, error) {
	out := make([]byte, n)
	max := big.NewInt(int64(len(alphabet)))
	for i := range out {
		k, err := rand.Int(rand.Reader, max)
		if err != nil {
			return nil, err
		}
		out[i] = alphabet[k.Int64()]
	}
	return out, nil
}

// fillTemplate replaces every "{{value}}" string in a JSON template with value.
func fillTemplate(tmpl json.RawMessage, value string) ([]byte, error) {
	var doc any
	if err := json.Unmarshal(tmpl, &doc); err != nil {
		return nil, err
	}
	var walk func(any) any
	walk = func(v any) any {
		switch t := v.(type) {
		case string:
			if t == Placeholder {
				return value
			}
		case map[string]any:
			for k, x := range t {
				t[k] = walk(x)
			}
		case []any:
			for i, x := range t {
				t[i] = walk(x)
			}
		}
		return v
	}
	return json.Marshal(walk(doc))
}

// Random rotates a value with no external target: passwords, API keys, tokens that keyward
// itself hands out.
type Random struct{ s RandomSettings }

// NewRandom is the rotation.Factory of the "random" rotator.
func NewRandom(raw json.RawMessage) (rotation.Rotator, []string, error) {
	var s RandomSettings
	if err := decodeStrict(raw, &s); err != nil {
		return nil, nil, err
	}
	if err := s.check(); err != nil {
		return nil, nil, fmt.Errorf("%w: random: %v", rotation.ErrInvalidPolicy, err)
	}
	return &Random{s: s}, nil, nil
}

// Generate draws a new value.
func (r *Random) Generate(context.Context, *rotation.Job) ([]byte, error) { return r.s.generate() }

// Apply does nothing: there is no target.
func (r *Random) Apply(context.Context, *rotation.Job, []byte) error { return nil }

// Test does nothing.
func (r *Random) Test(context.Context, *rotation.Job, []byte) error { return nil }

// Finish does nothing.
func (r *Random) Finish(context.Context, *rotation.Job, []byte) error { return nil }

// Revoke does nothing: the old version's DEPRECATED state is the revocation.
func (r *Random) Revoke(context.Context, *rotation.Job, []byte, []byte) error { return nil }

// Discard does nothing.
func (r *Random) Discard(context.Context, *rotation.Job, []byte) error { return nil }

// All returns every rotator of this package by name.
func All() map[string]rotation.Factory {
	return map[string]rotation.Factory{
		"random":   NewRandom,
		"postgres": NewPostgres,
		"webhook":  NewWebhook,
	}
}
