package kms_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// localKMS is the local-kms server shared by the AWS tests: started on first
// use, stopped by TestMain.
var localKMS localKMSServer

func TestMain(m *testing.M) {
	code := m.Run()
	localKMS.stop()
	os.Exit(code)
}

// localKMSServer runs github.com/nsmithuk/local-kms, built from the module's
// tool dependency, on a random local port.
type localKMSServer struct {
	once     sync.Once
	err      error
	dir      string
	cmd      *exec.Cmd
	exited   chan struct{}
	log      lockedBuffer
	endpoint string
	keyARN   string
}

// startLocalKMS returns the endpoint of the shared local-kms server and the
// ARN of a symmetric key on it. It fails the test if the server cannot be
// built or started.
func startLocalKMS(t *testing.T) (endpoint, keyARN string) {
	t.Helper()
	localKMS.once.Do(func() { localKMS.err = localKMS.start() })
	if localKMS.err != nil {
		t.Fatalf("local-kms: %v", localKMS.err)
	}
	return localKMS.endpoint, localKMS.keyARN
}

func (s *localKMSServer) start() error {
	dir, err := os.MkdirTemp("", "keyward-local-kms-")
	if err != nil {
		return err
	}
	s.dir = dir
	root, err := moduleRoot()
	if err != nil {
		return err
	}

	bin := filepath.Join(dir, "local-kms")
	buildCtx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(buildCtx, "go", "build", "-o", bin, "github.com/nsmithuk/local-kms")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build github.com/nsmithuk/local-kms: %w\n%s", err, out)
	}

	port, err := freePort()
	if err != nil {
		return err
	}
	s.cmd = exec.Command(bin)
	s.cmd.Env = append(os.Environ(),
		"PORT="+strconv.Itoa(port),
		"KMS_DATA_PATH="+filepath.Join(dir, "data"),
		"KMS_SEED_PATH="+filepath.Join(dir, "no-seed.yaml"),
		"KMS_REGION=us-east-1",
	)
	s.cmd.Stdout = &s.log
	s.cmd.Stderr = &s.log
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	s.exited = make(chan struct{})
	go func() {
		_ = s.cmd.Wait()
		close(s.exited)
	}()

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := waitListening(addr, s.exited, 60*time.Second); err != nil {
		return fmt.Errorf("%w\nserver output:\n%s", err, s.log.String())
	}
	s.endpoint = "http://" + addr

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	arn, err := createKey(ctx, s.endpoint)
	if err != nil {
		return fmt.Errorf("CreateKey: %w\nserver output:\n%s", err, s.log.String())
	}
	s.keyARN = arn
	return nil
}

func (s *localKMSServer) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}

// createKey creates a symmetric encryption key on the server and returns its ARN.
func createKey(ctx context.Context, endpoint string) (string, error) {
	cfg, err := config.LoadDefaultConfig(ctx,
		config.WithRegion("us-east-1"),
		config.WithCredentialsProvider(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "AKIDLOCALKMS", SecretAccessKey: "local-kms-dummy"}, nil
		})),
	)
	if err != nil {
		return "", err
	}
	client := awskms.NewFromConfig(cfg, func(o *awskms.Options) { o.BaseEndpoint = aws.String(endpoint) })
	out, err := client.CreateKey(ctx, &awskms.CreateKeyInput{
		KeySpec:     types.KeySpecSymmetricDefault,
		KeyUsage:    types.KeyUsageTypeEncryptDecrypt,
		Description: aws.String("keyward kms tests"),
	})
	if err != nil {
		return "", err
	}
	if out.KeyMetadata == nil || aws.ToString(out.KeyMetadata.Arn) == "" {
		return "", errors.New("CreateKey returned no key ARN")
	}
	return aws.ToString(out.KeyMetadata.Arn), nil
}

// moduleRoot returns the nearest directory at or above the working directory
// holding a go.mod file.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod found above the test's working directory")
		}
		dir = parent
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitListening polls addr until it accepts connections, the process exits,
// or the timeout passes.
func waitListening(addr string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return conn.Close()
		}
		select {
		case <-exited:
			return errors.New("server exited before listening")
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server not listening on %s after %v: %w", addr, timeout, err)
		}
	}
}

// lockedBuffer is a bytes.Buffer safe for concurrent writes and reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
