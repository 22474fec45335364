package clustertest_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keyward/keyward/api/client"
	"github.com/keyward/keyward/api/wire"
	"github.com/keyward/keyward/cluster/clustertest"
	"github.com/keyward/keyward/internal/pgtest"
	"github.com/keyward/keyward/rotation/rotators"
)

// anyNode is a client of every node: reads and writes fail over to the nodes that answer.
func anyNode(t *testing.T, c *clustertest.Cluster) *client.Client {
	t.Helper()
	urls := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		urls[i] = n.URL()
	}
	cl, err := client.New(strings.Join(urls, ","), client.WithTLSConfig(c.TLS), client.WithToken(c.Token))
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

type pgCreds struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// setupPostgresRotation creates two login roles taking turns, the admin connection secret, the
// application's credential secret and its postgres rotation policy.
func setupPostgresRotation(t *testing.T, ctx context.Context, cl *client.Client, pg *pgtest.Server, schedule, grace string) {
	t.Helper()
	pg.Exec(t, "CREATE ROLE app_blue LOGIN PASSWORD 'blue-initial-pw'", "CREATE ROLE app_green NOLOGIN")
	admin := fmt.Sprintf(`{"host":%q,"port":%d,"database":"postgres","username":%q,"password":%q,"sslmode":"disable"}`,
		pg.Host, pg.Port, pg.Admin, pg.Password)
	if _, err := cl.Put(ctx, "db/admin", []byte(admin), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Put(ctx, "db/app", []byte(`{"username":"app_blue","password":"blue-initial-pw"}`), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.SetRotation(ctx, "db/app", wire.RotationPolicyRequest{Schedule: schedule, Grace: grace, Rotator: "postgres",
		Settings: json.RawMessage(`{"connection":"db/admin","roles":["app_blue","app_green"],"connect_timeout":"3s"}`)}); err != nil {
		t.Fatal(err)
	}
}

func pgLogin(ctx context.Context, pg *pgtest.Server, cr pgCreds) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, pg.URLFor(cr.Username, cr.Password))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var one int
	return conn.QueryRow(cctx, "SELECT 1").Scan(&one)
}

// waitRotationEnded polls the history until rotation seq has ended.
func waitRotationEnded(t *testing.T, ctx context.Context, cl *client.Client, path string, seq uint64) wire.Rotation {
	t.Helper()
	for {
		if h, err := cl.RotationHistory(ctx, path); err == nil {
			for _, r := range h.Rotations {
				if r.Seq == seq && r.Outcome != "" {
					return r
				}
			}
		}
		select {
		case <-ctx.Done():
			h, _ := cl.RotationHistory(context.Background(), path)
			t.Fatalf("rotation %d of %s did not end: %+v", seq, path, h)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func credsOf(t *testing.T, ctx context.Context, cl *client.Client, path string, sel client.Selector) pgCreds {
	t.Helper()
	s, err := cl.Get(ctx, path, sel)
	if err != nil {
		t.Fatal(err)
	}
	var cr pgCreds
	if err := json.Unmarshal(s.Value, &cr); err != nil {
		t.Fatal(err)
	}
	return cr
}

// TestRotationSurvivesLeaderKilledAtEachStep: for each step boundary of the protocol in turn,
// the leader is killed right after recording the step (a test-only hook pauses its runner
// there); the new leader finishes the rotation exactly once, a secret has exactly one CURRENT
// version throughout, and the old credential is revoked at PostgreSQL after the grace period.
func TestRotationSurvivesLeaderKilledAtEachStep(t *testing.T) {
	pg := pgtest.Start(t)
	hooks := t.TempDir()
	c := clustertest.StartCluster(t, binary, clustertest.Options{Voters: 3,
		Args: []string{"--rotation-test-hook-dir", hooks, "--rotation-backoff", "200ms"}})
	ctx := ctxT(t, 8*time.Minute)
	cl := anyNode(t, c)
	setupPostgresRotation(t, ctx, cl, pg, "24h", "2s")

	// Sample the versions all along: never anything but exactly one CURRENT.
	var samples, bad atomic.Int64
	var badMu sync.Mutex
	var badSeen []string
	sctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for sctx.Err() == nil {
			if v, err := cl.Versions(sctx, "db/app"); err == nil {
				n := 0
				for _, x := range v.Versions {
					if x.State == "CURRENT" {
						n++
					}
				}
				samples.Add(1)
				if n != 1 {
					bad.Add(1)
					badMu.Lock()
					badSeen = append(badSeen, fmt.Sprintf("%+v", v.Versions))
					badMu.Unlock()
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	steps := []string{"started", "pending", "applied", "tested", "promoted", "finished"}
	prev := pgCreds{Username: "app_blue", Password: "blue-initial-pw"}
	for i, step := range steps {
		seq := uint64(i + 1)
		if err := os.WriteFile(filepath.Join(hooks, "pause-at-"+step), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := cl.RotateNow(ctx, "db/app", 0)
		if err != nil || out.Seq != seq {
			t.Fatalf("%s: rotate now: %+v %v", step, out, err)
		}
		// Find the paused leader and kill it.
		var paused string
		for paused == "" {
			m, _ := filepath.Glob(filepath.Join(hooks, "paused-at-"+step+".*"))
			if len(m) == 1 {
				paused = m[0]
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s: the runner never paused\n%s", step, c.Dump())
			case <-time.After(20 * time.Millisecond):
			}
		}
		nodeID := strings.TrimPrefix(filepath.Ext(paused), ".")
		victim := -1
		for j, id := range c.IDs {
			if id == nodeID {
				victim = j
			}
		}
		if victim < 0 {
			t.Fatalf("paused node %q unknown", nodeID)
		}
		c.Kill(victim)
		os.Remove(paused)
		if _, err := c.WaitForNewLeader(ctx, victim); err != nil {
			t.Fatal(err)
		}
		c.Restart(victim)

		r := waitRotationEnded(t, ctx, cl, "db/app", seq)
		if r.Outcome != "succeeded" {
			t.Fatalf("%s: rotation %d %s: %s", step, seq, r.Outcome, r.Error)
		}
		// Exactly once: each step recorded once (failed attempts aside), one new version.
		count := map[string]int{}
		for _, e := range r.Events {
			if e.Error == "" {
				count[e.Step]++
			}
		}
		for _, s := range append(steps, "completed") {
			if count[s] != 1 {
				t.Fatalf("%s: step %s recorded %d times: %+v", step, s, count[s], r.Events)
			}
		}
		v, err := cl.Versions(ctx, "db/app")
		if err != nil {
			t.Fatal(err)
		}
		if v.CurrentVersion != seq+1 || uint64(len(v.Versions)) != seq+1 || r.NewVersion != seq+1 {
			t.Fatalf("%s: current %d, %d versions, rotation made %d", step, v.CurrentVersion, len(v.Versions), r.NewVersion)
		}
		for _, x := range v.Versions {
			if x.Version != seq+1 && x.State != "DEPRECATED" {
				t.Fatalf("%s: version %d is %s after the grace period", step, x.Version, x.State)
			}
		}
		pol, err := cl.Rotation(ctx, "db/app")
		if err != nil || pol.Policy.LastSeq != seq || pol.Policy.ActiveSeq != 0 {
			t.Fatalf("%s: policy %+v %v", step, pol, err)
		}
		// The new credential works; the old one was revoked at PostgreSQL.
		cur := credsOf(t, ctx, cl, "db/app", client.Selector{})
		if cur.Username == prev.Username {
			t.Fatalf("%s: the same role %s twice in a row", step, cur.Username)
		}
		if err := pgLogin(ctx, pg, cur); err != nil {
			t.Fatalf("%s: new credential: %v", step, err)
		}
		if err := pgLogin(ctx, pg, prev); err == nil {
			t.Fatalf("%s: old credential of %s still logs in after the grace period", step, prev.Username)
		}
		prev = cur
		if err := c.Nodes[victim].WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}
	stop()
	wg.Wait()
	if bad.Load() != 0 || samples.Load() < 50 {
		t.Fatalf("%d of %d version samples without exactly one CURRENT: %v", bad.Load(), samples.Load(), badSeen)
	}
	t.Logf("6 leader kills, 6 rotations completed exactly once; %d version samples, all with one CURRENT", samples.Load())
	// Nothing of the values reached the nodes' logs.
	for i, n := range c.Nodes {
		if strings.Contains(string(n.Logs()), prev.Password) || strings.Contains(string(n.Logs()), pg.Password) {
			t.Fatalf("node %d logged a credential", i)
		}
	}
}

// TestRotationZeroDowntimePostgres: clients keep opening PostgreSQL connections with
// credentials read through the client cache (TTL shorter than the grace period) while the
// leader rotates them every few seconds; no connection fails except the ones the cache's lazy
// refresh recovers at once.
func TestRotationZeroDowntimePostgres(t *testing.T) {
	pg := pgtest.Start(t)
	c := clustertest.StartCluster(t, binary, clustertest.Options{Voters: 3})
	ctx := ctxT(t, 5*time.Minute)
	admin := anyNode(t, c)
	setupPostgresRotation(t, ctx, admin, pg, "2s", "3s")

	// Four workers cache with a TTL shorter than the grace period; a fifth keeps values for
	// 30 s, longer than the grace period, so it meets revoked credentials and depends on the
	// lazy refresh.
	const workers = 5
	var attempts, ok, refreshed, failed atomic.Int64
	var failMu sync.Mutex
	var failures []string
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := range workers {
		cl := c.Client(w % len(c.Nodes))
		ttl := time.Second
		if w == workers-1 {
			ttl = 30 * time.Second
		}
		cache := client.NewCache(func(ctx context.Context, path string, sel client.Selector) (*client.Secret, error) {
			fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			return cl.Get(fctx, path, sel)
		}, client.CacheOptions{TTL: ttl})
		defer cache.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rctx.Err() == nil {
				attempts.Add(1)
				tries := 0
				err := cache.WithRefresh(rctx, "db/app", client.Selector{}, func(s *client.Secret) error {
					tries++
					var cr pgCreds
					if err := json.Unmarshal(s.Value, &cr); err != nil {
						return err
					}
					err := pgLogin(rctx, pg, cr)
					var pe *pgconn.PgError
					if errors.As(err, &pe) && (pe.Code == "28P01" || pe.Code == "28000") {
						return fmt.Errorf("%w: %s", client.ErrAuthFailed, pe.Code)
					}
					return err
				})
				switch {
				case rctx.Err() != nil:
				case err != nil:
					failed.Add(1)
					failMu.Lock()
					failures = append(failures, err.Error())
					failMu.Unlock()
				default:
					ok.Add(1)
					if tries > 1 {
						refreshed.Add(1)
					}
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}

	// Let at least four rotations complete.
	deadline := time.Now().Add(3 * time.Minute)
	var done uint64
	for done < 4 {
		if h, err := admin.RotationHistory(ctx, "db/app"); err == nil {
			done = 0
			for _, r := range h.Rotations {
				if r.Outcome == "succeeded" {
					done++
				} else if r.Outcome != "" {
					t.Fatalf("rotation %d %s: %s", r.Seq, r.Outcome, r.Error)
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d rotations completed", done)
		}
		time.Sleep(200 * time.Millisecond)
	}
	stop()
	wg.Wait()
	t.Logf("%d rotations; %d connections attempted, %d succeeded (%d after a lazy refresh), %d failed",
		done, attempts.Load(), ok.Load(), refreshed.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Fatalf("%d connections failed: %v", failed.Load(), failures)
	}
	if ok.Load() < 100 || refreshed.Load() == 0 {
		t.Fatalf("%d connections succeeded, %d after a lazy refresh", ok.Load(), refreshed.Load())
	}
}

// TestRotationFailedTestStepKeepsCurrent: a webhook target that refuses the test step makes
// the rotation fail after its retries; CURRENT is unchanged, the PENDING version discarded,
// and the signed calls reached the target. `rotation now` goes through a follower.
func TestRotationFailedTestStepKeepsCurrent(t *testing.T) {
	c := clustertest.StartCluster(t, binary, clustertest.Options{Voters: 3, Args: []string{"--rotation-backoff", "100ms"}})
	ctx := ctxT(t, 2*time.Minute)
	hook := newRefusingHook(t)
	leader := c.Leader()
	follower := (leader + 1) % len(c.Nodes)
	cl := c.Client(follower)
	if _, err := cl.Put(ctx, "hooks/key", []byte("signing-key"), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Put(ctx, "ext/api-key", []byte("key-v1"), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.SetRotation(ctx, "ext/api-key", wire.RotationPolicyRequest{Schedule: "24h", Rotator: "webhook",
		Settings: json.RawMessage(fmt.Sprintf(`{"url":%q,"hmac_key":"hooks/key","timeout":"2s"}`, hook.url))}); err != nil {
		t.Fatal(err)
	}
	out, err := cl.RotateNow(ctx, "ext/api-key", 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r := out.Rotation
	if !out.Done || r == nil || r.Outcome != "failed" || r.Step != "failed" || !strings.Contains(r.Error, "HTTP 503") {
		t.Fatalf("rotate now: %+v %+v", out, r)
	}
	v, err := cl.Get(ctx, "ext/api-key", client.Selector{})
	if err != nil || string(v.Value) != "key-v1" || v.Version != 1 {
		t.Fatalf("CURRENT after the failed rotation: %+v %v", v, err)
	}
	vs, err := cl.Versions(ctx, "ext/api-key")
	if err != nil || len(vs.Versions) != 2 || vs.Versions[0].State != "DEPRECATED" || !vs.Versions[0].Destroyed {
		t.Fatalf("pending version not discarded: %+v %v", vs, err)
	}
	pol, err := cl.Rotation(ctx, "ext/api-key")
	if err != nil || pol.Policy.LastOutcome != "failed" || pol.Policy.ActiveSeq != 0 {
		t.Fatalf("policy %+v %v", pol, err)
	}
	if got := hook.stepsSeen(); got != "create,set,test,test,test,revoke" || hook.badSignatures.Load() != 0 {
		t.Fatalf("webhook calls %s, bad signatures %d", got, hook.badSignatures.Load())
	}
}

// refusingHook is a real webhook endpoint that checks each call's signature and refuses the
// test step.
type refusingHook struct {
	url           string
	mu            sync.Mutex
	steps         []string
	badSignatures atomic.Int64
}

func newRefusingHook(t *testing.T) *refusingHook {
	h := &refusingHook{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ts := r.Header.Get(rotators.HeaderTimestamp)
		mac := hmac.New(sha256.New, []byte("signing-key"))
		mac.Write([]byte(ts + "." + string(body)))
		if !hmac.Equal([]byte("sha256="+hex.EncodeToString(mac.Sum(nil))), []byte(r.Header.Get(rotators.HeaderSignature))) {
			h.badSignatures.Add(1)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var req rotators.WebhookRequest
		_ = json.Unmarshal(body, &req)
		h.mu.Lock()
		h.steps = append(h.steps, req.Step)
		h.mu.Unlock()
		if req.Step == rotators.HookTest {
			http.Error(w, "the new key does not work", http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	h.url = srv.URL
	return h
}

func (h *refusingHook) stepsSeen() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.Join(h.steps, ",")
}
