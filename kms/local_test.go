package kms_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/keyward/keyward/kms"
)

func TestLocalWrapRoundTrip(t *testing.T) {
	ctx := context.Background()
	p := newTestLocal(t)
	encCtx := map[string]string{"keyward:secret_id": "db/password", "keyward:version": "3"}
	pt, wrapped, keyID, err := p.GenerateDataKey(ctx, encCtx)
	if err != nil {
		t.Fatal(err)
	}
	if len(pt) != 32 {
		t.Fatalf("data key is %d bytes, want 32", len(pt))
	}
	if keyID != p.KeyID() {
		t.Fatalf("keyID = %q, want %q", keyID, p.KeyID())
	}
	if len(wrapped) != 1+12+32+16 || wrapped[0] != 0x01 {
		t.Fatalf("wrapped key is %d bytes with format 0x%02x", len(wrapped), wrapped[0])
	}
	if bytes.Contains(wrapped, pt) {
		t.Fatal("wrapped key contains the plaintext data key")
	}
	got, err := p.Decrypt(ctx, keyID, wrapped, map[string]string{"keyward:version": "3", "keyward:secret_id": "db/password"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, pt) {
		t.Fatal("unwrapped key differs")
	}

	pt2, wrapped2, _, err := p.GenerateDataKey(ctx, encCtx)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(pt, pt2) || bytes.Equal(wrapped, wrapped2) {
		t.Fatal("GenerateDataKey returned the same key twice")
	}
}

func TestLocalDecryptFailures(t *testing.T) {
	ctx := context.Background()
	p := newTestLocal(t)
	encCtx := map[string]string{"a": "bc"}
	pt, wrapped, keyID, err := p.GenerateDataKey(ctx, encCtx)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("other context", func(t *testing.T) {
		for _, other := range []map[string]string{
			nil,
			{"a": "bd"},
			{"ab": "c"},
			{"a": "bc", "x": ""},
		} {
			_, err := p.Decrypt(ctx, keyID, wrapped, other)
			wantErr(t, err, kms.ErrDecrypt, pt)
		}
	})
	t.Run("tampered", func(t *testing.T) {
		for i := 1; i < len(wrapped); i++ {
			w := bytes.Clone(wrapped)
			w[i] ^= 0x01
			_, err := p.Decrypt(ctx, keyID, w, encCtx)
			wantErr(t, err, kms.ErrDecrypt, pt)
		}
	})
	t.Run("bad format", func(t *testing.T) {
		w := bytes.Clone(wrapped)
		w[0] = 0x02
		_, err := p.Decrypt(ctx, keyID, w, encCtx)
		wantErr(t, err, kms.ErrBadFormat, pt)
		for _, n := range []int{0, 1, 13, len(wrapped) - 1} {
			_, err := p.Decrypt(ctx, keyID, wrapped[:n], encCtx)
			wantErr(t, err, kms.ErrBadFormat, pt)
		}
		_, err = p.Decrypt(ctx, keyID, append(bytes.Clone(wrapped), 0), encCtx)
		wantErr(t, err, kms.ErrBadFormat, pt)
	})
	t.Run("other key id", func(t *testing.T) {
		_, err := p.Decrypt(ctx, "local:0000000000000000", wrapped, encCtx)
		wantErr(t, err, kms.ErrWrongKey, pt)
	})
}

func TestLocalSecondKEKCannotUnwrap(t *testing.T) {
	ctx := context.Background()
	p1, p2 := newTestLocal(t), newTestLocal(t)
	if p1.KeyID() == p2.KeyID() {
		t.Fatal("two fresh key files have the same KeyID")
	}
	encCtx := map[string]string{"k": "v"}
	pt, wrapped, keyID, err := p1.GenerateDataKey(ctx, encCtx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p2.Decrypt(ctx, keyID, wrapped, encCtx)
	wantErr(t, err, kms.ErrWrongKey, pt)
	// Even when told the wrapped key is its own, the second KEK fails
	// authentication.
	_, err = p2.Decrypt(ctx, p2.KeyID(), wrapped, encCtx)
	wantErr(t, err, kms.ErrDecrypt, pt)

	// The same holds through an Envelope.
	s := mustSeal(t, kms.NewEnvelope(p1, kms.CacheOptions{}), "s", 1, []byte("s3cr3t-v4lue"))
	_, err = kms.NewEnvelope(p2, kms.CacheOptions{}).Open(ctx, "s", 1, s)
	wantErr(t, err, kms.ErrWrongKey, []byte("s3cr3t-v4lue"))
	s.KeyID = p2.KeyID()
	_, err = kms.NewEnvelope(p2, kms.CacheOptions{}).Open(ctx, "s", 1, s)
	wantErr(t, err, kms.ErrDecrypt, []byte("s3cr3t-v4lue"))
}
