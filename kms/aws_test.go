package kms_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/keyward/keyward/kms"
)

// awsTestEnv points the default AWS credential chain at static dummy
// credentials and away from any shared config on the machine.
func awsTestEnv(t *testing.T) {
	t.Helper()
	none := filepath.Join(t.TempDir(), "none")
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID":           "AKIDKEYWARDTEST",
		"AWS_SECRET_ACCESS_KEY":       "keyward-test-dummy-secret",
		"AWS_SESSION_TOKEN":           "",
		"AWS_PROFILE":                 "",
		"AWS_CONFIG_FILE":             none,
		"AWS_SHARED_CREDENTIALS_FILE": none,
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_ENDPOINT_URL":            "",
		"AWS_ENDPOINT_URL_KMS":        "",
	} {
		t.Setenv(k, v)
	}
}

func newTestAWS(t *testing.T) (*kms.AWS, string) {
	t.Helper()
	endpoint, arn := startLocalKMS(t)
	awsTestEnv(t)
	p, err := kms.NewAWS(context.Background(), kms.AWSConfig{KeyID: arn, Endpoint: endpoint})
	if err != nil {
		t.Fatalf("NewAWS: %v", err)
	}
	return p, arn
}

func TestAWSEnvelopeRoundTrip(t *testing.T) {
	p, arn := newTestAWS(t)
	if p.Name() != "awskms" || p.KeyID() != arn {
		t.Fatalf("Name, KeyID = %q, %q; want awskms, %q", p.Name(), p.KeyID(), arn)
	}
	e := kms.NewEnvelope(p, kms.CacheOptions{})
	value := []byte("through local-kms")
	s := mustSeal(t, e, "aws/secret", 42, value)
	if s.Provider != "awskms" || s.KeyID != arn {
		t.Fatalf("Sealed names provider %q key %q, want awskms %q", s.Provider, s.KeyID, arn)
	}
	mustOpen(t, e, "aws/secret", 42, s, value)
	wantStats(t, e, kms.EnvelopeStats{ProviderCalls: 1, CacheHits: 1})

	// A cold Envelope unwraps through KMS once, then serves from its cache.
	cold := kms.NewEnvelope(p, kms.CacheOptions{})
	mustOpen(t, cold, "aws/secret", 42, s, value)
	mustOpen(t, cold, "aws/secret", 42, s, value)
	wantStats(t, cold, kms.EnvelopeStats{ProviderCalls: 1, CacheHits: 1, CacheMisses: 1})

	s2 := mustSeal(t, e, "aws/secret", 42, value)
	if bytes.Equal(s.WrappedKey, s2.WrappedKey) || bytes.Equal(s.Ciphertext, s2.Ciphertext) {
		t.Fatal("two seals share a data key or ciphertext")
	}
}

func TestAWSWrongContext(t *testing.T) {
	p, _ := newTestAWS(t)
	ctx := context.Background()
	value := []byte("bound to v1")
	s := mustSeal(t, kms.NewEnvelope(p, kms.CacheOptions{}), "aws/moved", 1, value)

	// Cold envelopes, so KMS itself checks the encryption context.
	_, err := kms.NewEnvelope(p, kms.CacheOptions{}).Open(ctx, "aws/moved", 2, s)
	wantErr(t, err, kms.ErrDecrypt, value)
	_, err = kms.NewEnvelope(p, kms.CacheOptions{}).Open(ctx, "aws/other", 1, s)
	wantErr(t, err, kms.ErrDecrypt, value)

	// Directly at the provider: wrong context, tampered wrapped key.
	encCtx := map[string]string{"keyward:secret_id": "x", "keyward:version": "1"}
	pt, wrapped, keyID, err := p.GenerateDataKey(ctx, encCtx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Decrypt(ctx, keyID, wrapped, map[string]string{"keyward:secret_id": "x", "keyward:version": "2"})
	wantErr(t, err, kms.ErrDecrypt, pt)
	bad := bytes.Clone(wrapped)
	bad[len(bad)-1] ^= 0x01
	_, err = p.Decrypt(ctx, keyID, bad, encCtx)
	wantErr(t, err, kms.ErrDecrypt, pt)
	got, err := p.Decrypt(ctx, keyID, wrapped, encCtx)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Decrypt with the right context failed: %v", err)
	}
}

// boundedRetries makes a KMS client give up quickly.
func boundedRetries(o *awskms.Options) {
	o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
		so.MaxAttempts = 2
		so.MaxBackoff = 20 * time.Millisecond
	})
}

func TestAWSUnreachable(t *testing.T) {
	awsTestEnv(t)
	port, err := freePort() // closed again: connections are refused
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := kms.NewAWSWithOptions(ctx, kms.AWSConfig{
		KeyID:    "alias/keyward",
		Region:   "eu-west-1",
		Endpoint: "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
	}, boundedRetries)
	if err != nil {
		t.Fatal(err)
	}
	e := kms.NewEnvelope(p, kms.CacheOptions{})

	start := time.Now()
	_, err = e.Seal(ctx, "id", 1, []byte("s3cr3t-v4lue"))
	wantErr(t, err, kms.ErrUnavailable, []byte("s3cr3t-v4lue"))
	t.Logf("Seal: %v", err)
	_, err = e.Open(ctx, "id", 1, kms.Sealed{Ciphertext: append([]byte{0x01}, make([]byte, 40)...), WrappedKey: []byte{1, 2, 3}, KeyID: "alias/keyward", Provider: "awskms"})
	wantErr(t, err, kms.ErrUnavailable, nil)
	t.Logf("Open: %v", err)
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Fatalf("unreachable provider took %v to fail", elapsed)
	}
}

func TestAWSHangingServer(t *testing.T) {
	awsTestEnv(t)
	// A server that accepts connections and never answers.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		var conns []net.Conn
		for {
			conn, err := l.Accept()
			if err != nil { // listener closed at the end of the test
				for _, c := range conns {
					c.Close()
				}
				return
			}
			conns = append(conns, conn)
		}
	}()
	p, err := kms.NewAWS(context.Background(), kms.AWSConfig{KeyID: "alias/keyward", Endpoint: "http://" + l.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = kms.NewEnvelope(p, kms.CacheOptions{}).Seal(ctx, "id", 1, []byte("s3cr3t-v4lue"))
	wantErr(t, err, kms.ErrUnavailable, []byte("s3cr3t-v4lue"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Fatalf("hanging provider took %v to fail", elapsed)
	}
}

func TestNewAWSRequiresKeyID(t *testing.T) {
	awsTestEnv(t)
	if _, err := kms.NewAWS(context.Background(), kms.AWSConfig{}); err == nil {
		t.Fatal("NewAWS accepted an empty KeyID")
	}
}

func TestAWSErrorClassification(t *testing.T) {
	tests := []struct {
		err  error
		want error
	}{
		{&types.InvalidCiphertextException{Message: aws.String("bad")}, kms.ErrDecrypt},
		{&types.IncorrectKeyException{}, kms.ErrWrongKey},
		{&types.NotFoundException{}, kms.ErrWrongKey},
		{&types.InvalidKeyUsageException{}, kms.ErrWrongKey},
		{&types.KMSInternalException{}, kms.ErrUnavailable},
		{&types.DependencyTimeoutException{}, kms.ErrUnavailable},
		{&types.KeyUnavailableException{}, kms.ErrUnavailable},
		{&types.DisabledException{}, kms.ErrUnavailable},
		{&types.KMSInvalidStateException{}, kms.ErrUnavailable},
		{&types.LimitExceededException{}, kms.ErrUnavailable},
		{&smithy.GenericAPIError{Code: "ThrottlingException"}, kms.ErrUnavailable},
		{&smithy.GenericAPIError{Code: "AccessDeniedException"}, kms.ErrUnavailable},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, kms.ErrUnavailable},
		{context.DeadlineExceeded, kms.ErrUnavailable},
	}
	for _, tt := range tests {
		got := kms.ClassifyAWSError(tt.err)
		if !errors.Is(got, tt.want) {
			t.Errorf("classify(%T %v) = %v, want %v", tt.err, tt.err, got, tt.want)
		}
		if !errors.Is(got, tt.err) {
			t.Errorf("classify(%T) dropped the SDK error from the chain", tt.err)
		}
	}
}
