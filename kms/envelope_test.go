package kms_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/keyward/keyward/kms"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	p := newTestLocal(t)
	e := kms.NewEnvelope(p, kms.CacheOptions{})
	if e.Provider() != kms.Provider(p) {
		t.Fatal("Provider() is not the provider given to NewEnvelope")
	}
	for _, value := range [][]byte{nil, []byte("x"), []byte("correct horse battery staple"), bytes.Repeat([]byte{0xff}, 64<<10)} {
		s := mustSeal(t, e, "app/db-password", 7, value)
		if s.Provider != "local" || s.KeyID != p.KeyID() {
			t.Fatalf("Sealed names provider %q key %q", s.Provider, s.KeyID)
		}
		if len(s.Ciphertext) != 1+12+len(value)+16 || s.Ciphertext[0] != 0x01 {
			t.Fatalf("ciphertext is %d bytes with format 0x%02x", len(s.Ciphertext), s.Ciphertext[0])
		}
		if len(value) > 8 && bytes.Contains(s.Ciphertext, value) {
			t.Fatal("ciphertext contains the plaintext")
		}
		mustOpen(t, e, "app/db-password", 7, s, value)
		// A cold cache goes through the provider.
		mustOpen(t, kms.NewEnvelope(p, kms.CacheOptions{}), "app/db-password", 7, s, value)
	}
}

func TestEnvelopeFreshDataKeyPerSeal(t *testing.T) {
	e := kms.NewEnvelope(newTestLocal(t), kms.CacheOptions{})
	value := []byte("same value")
	s1 := mustSeal(t, e, "id", 1, value)
	s2 := mustSeal(t, e, "id", 1, value)
	if bytes.Equal(s1.WrappedKey, s2.WrappedKey) {
		t.Error("two seals share a wrapped data key")
	}
	if bytes.Equal(s1.Ciphertext, s2.Ciphertext) {
		t.Error("two seals of the same value produced the same ciphertext")
	}
	if bytes.Equal(s1.Ciphertext[1:13], s2.Ciphertext[1:13]) {
		t.Error("two seals share a nonce")
	}
	// Each wrapped key only opens its own ciphertext.
	_, err := e.Open(context.Background(), "id", 1, kms.Sealed{Ciphertext: s1.Ciphertext, WrappedKey: s2.WrappedKey, KeyID: s2.KeyID, Provider: s2.Provider})
	wantErr(t, err, kms.ErrDecrypt, value)
	if got := e.Stats().ProviderCalls; got != 2 {
		t.Errorf("ProviderCalls = %d, want 2 (one GenerateDataKey per Seal)", got)
	}
}

func TestEnvelopeMovedCiphertext(t *testing.T) {
	ctx := context.Background()
	p := newTestLocal(t)
	warm := kms.NewEnvelope(p, kms.CacheOptions{})
	value := []byte("top secret")
	s := mustSeal(t, warm, "secret-a", 1, value)
	s2 := mustSeal(t, warm, "secret-a", 2, value)

	for _, tc := range []struct {
		name     string
		secretID string
		version  uint64
		sealed   kms.Sealed
	}{
		{"other secret", "secret-b", 1, s},
		{"other version", "secret-a", 2, s},
		{"secret id prefix", "secret-", 1, s},
		{"ciphertext of v1 with key of v2", "secret-a", 2, kms.Sealed{Ciphertext: s.Ciphertext, WrappedKey: s2.WrappedKey, KeyID: s2.KeyID, Provider: s2.Provider}},
		{"ciphertext of v2 with key of v1", "secret-a", 1, kms.Sealed{Ciphertext: s2.Ciphertext, WrappedKey: s.WrappedKey, KeyID: s.KeyID, Provider: s.Provider}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, e := range []*kms.Envelope{warm, kms.NewEnvelope(p, kms.CacheOptions{})} {
				_, err := e.Open(ctx, tc.secretID, tc.version, tc.sealed)
				wantErr(t, err, kms.ErrDecrypt, value)
			}
		})
	}
	// The originals still open.
	mustOpen(t, warm, "secret-a", 1, s, value)
	mustOpen(t, warm, "secret-a", 2, s2, value)
}

func TestEnvelopeTampered(t *testing.T) {
	ctx := context.Background()
	p := newTestLocal(t)
	e := kms.NewEnvelope(p, kms.CacheOptions{})
	value := []byte("tamper with me")
	s := mustSeal(t, e, "id", 1, value)

	t.Run("ciphertext", func(t *testing.T) {
		for i := 1; i < len(s.Ciphertext); i++ {
			bad := clone(s)
			bad.Ciphertext[i] ^= 0x80
			_, err := e.Open(ctx, "id", 1, bad)
			wantErr(t, err, kms.ErrDecrypt, value)
		}
	})
	t.Run("wrapped key", func(t *testing.T) {
		for i := 1; i < len(s.WrappedKey); i++ {
			bad := clone(s)
			bad.WrappedKey[i] ^= 0x80
			_, err := e.Open(ctx, "id", 1, bad)
			wantErr(t, err, kms.ErrDecrypt, value)
		}
	})
	t.Run("truncated tag", func(t *testing.T) {
		bad := clone(s)
		bad.Ciphertext = bad.Ciphertext[:len(bad.Ciphertext)-1]
		_, err := e.Open(ctx, "id", 1, bad)
		wantErr(t, err, kms.ErrDecrypt, value)
	})
	t.Run("other key id", func(t *testing.T) {
		bad := clone(s)
		bad.KeyID = "local:0123456789abcdef"
		_, err := e.Open(ctx, "id", 1, bad)
		wantErr(t, err, kms.ErrWrongKey, value)
	})
	t.Run("other provider", func(t *testing.T) {
		bad := clone(s)
		bad.Provider = "awskms"
		_, err := e.Open(ctx, "id", 1, bad)
		wantErr(t, err, kms.ErrWrongKey, value)
	})
	mustOpen(t, e, "id", 1, s, value)
}

func TestEnvelopeBadFormat(t *testing.T) {
	ctx := context.Background()
	p := newTestLocal(t)
	e := kms.NewEnvelope(p, kms.CacheOptions{})
	value := []byte("s3cr3t-v4lue")
	s := mustSeal(t, e, "id", 1, value)

	check := func(t *testing.T, bad kms.Sealed) {
		t.Helper()
		before := e.Stats()
		_, err := e.Open(ctx, "id", 1, bad)
		wantErr(t, err, kms.ErrBadFormat, value)
		if after := e.Stats(); after != before {
			t.Errorf("a malformed input reached the cache or provider: stats %+v -> %+v", before, after)
		}
	}
	t.Run("format byte", func(t *testing.T) {
		for _, b := range []byte{0x00, 0x02, 0xff} {
			bad := clone(s)
			bad.Ciphertext[0] = b
			check(t, bad)
		}
	})
	t.Run("truncated ciphertext", func(t *testing.T) {
		for _, n := range []int{0, 1, 13, 28} {
			bad := clone(s)
			bad.Ciphertext = bad.Ciphertext[:n]
			check(t, bad)
		}
	})
	t.Run("empty wrapped key", func(t *testing.T) {
		bad := clone(s)
		bad.WrappedKey = nil
		check(t, bad)
	})
	t.Run("wrapped key", func(t *testing.T) {
		for _, mutate := range []func(w []byte) []byte{
			func(w []byte) []byte { w[0] = 0x02; return w },
			func(w []byte) []byte { return w[:1] },
			func(w []byte) []byte { return w[:len(w)-1] },
		} {
			bad := clone(s)
			bad.WrappedKey = mutate(bad.WrappedKey)
			_, err := e.Open(ctx, "id", 1, bad)
			wantErr(t, err, kms.ErrBadFormat, value)
		}
	})
}

func TestEnvelopeConcurrent(t *testing.T) {
	p := newTestLocal(t)
	e := kms.NewEnvelope(p, kms.CacheOptions{Size: 64})
	shared := []byte("shared value")
	sharedSealed := mustSeal(t, e, "shared", 1, shared)

	const workers, iterations = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			ctx := context.Background()
			cold := kms.NewEnvelope(p, kms.CacheOptions{Size: 4})
			for i := range iterations {
				id := fmt.Sprintf("secret-%d", w)
				value := fmt.Appendf(nil, "value %d/%d", w, i)
				s, err := e.Seal(ctx, id, uint64(i), value)
				if err != nil {
					errs <- err
					return
				}
				for _, env := range []*kms.Envelope{e, cold} {
					got, err := env.Open(ctx, id, uint64(i), s)
					if err != nil || !bytes.Equal(got, value) {
						errs <- fmt.Errorf("Open(%s, %d) = %q, %v", id, i, got, err)
						return
					}
					got, err = env.Open(ctx, "shared", 1, sharedSealed)
					if err != nil || !bytes.Equal(got, shared) {
						errs <- fmt.Errorf("Open(shared) = %q, %v", got, err)
						return
					}
				}
				_ = e.Stats()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := e.Stats()
	if st.CacheHits+st.CacheMisses != 2*workers*iterations {
		t.Errorf("hits+misses = %d, want %d", st.CacheHits+st.CacheMisses, 2*workers*iterations)
	}
}
