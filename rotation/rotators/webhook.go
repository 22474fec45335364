package rotators

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/keyward/keyward/rotation"
)

// Webhook request headers. The signature is "sha256=" + hex(HMAC-SHA256(key, timestamp + "." +
// body)), timestamp being the X-Keyward-Timestamp header (Unix seconds); receivers should
// refuse timestamps far from their clock to stop replays.
const (
	HeaderSignature = "X-Keyward-Signature"
	HeaderTimestamp = "X-Keyward-Timestamp"
)

// Webhook steps, sent as "step" in each call.
const (
	HookCreate = "create" // may answer {"value": "..."}; otherwise keyward generates the value
	HookSet    = "set"    // set the new value at the target, keep the old one valid
	HookTest   = "test"   // check the new value works
	HookFinish = "finish" // the new value was promoted
	HookRevoke = "revoke" // the value is no longer valid (old value after the grace period, or a discarded pending one)
)

// WebhookSettings configure the webhook rotator. HMACKey is the path of the secret whose value
// is the signing key. Random configures the values keyward generates when create returns
// none.
type WebhookSettings struct {
	URL     string          `json:"url"`
	HMACKey string          `json:"hmac_key"`
	Timeout string          `json:"timeout,omitempty"` // per call, default 10s
	Random  json.RawMessage `json:"random,omitempty"`
}

// WebhookRequest is the JSON body of each call.
type WebhookRequest struct {
	Step       string `json:"step"`
	Path       string `json:"path"`
	RotationID string `json:"rotation_id"`
	Seq        uint64 `json:"seq"`
	Value      string `json:"value,omitempty"` // the value the step is about (none for create)
}

// WebhookCreateResponse is what create may answer.
type WebhookCreateResponse struct {
	Value string `json:"value"`
}

// Webhook rotates API keys of external systems through an HTTP endpoint that implements the
// steps. Any non-2xx answer fails the step.
type Webhook struct {
	s       WebhookSettings
	random  RandomSettings
	client  *http.Client
	timeout time.Duration
}

// NewWebhook is the rotation.Factory of the "webhook" rotator.
func NewWebhook(raw json.RawMessage) (rotation.Rotator, []string, error) {
	var s WebhookSettings
	if err := decodeStrict(raw, &s); err != nil {
		return nil, nil, err
	}
	bad := func(format string, a ...any) (rotation.Rotator, []string, error) {
		return nil, nil, fmt.Errorf("%w: webhook: %s", rotation.ErrInvalidPolicy, fmt.Sprintf(format, a...))
	}
	u, err := url.Parse(s.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return bad("url must be an http(s) URL")
	}
	if s.HMACKey == "" {
		return bad("hmac_key (the path of the signing key secret) is required")
	}
	w := &Webhook{s: s, timeout: 10 * time.Second}
	if s.Timeout != "" {
		d, err := time.ParseDuration(s.Timeout)
		if err != nil || d <= 0 || d > 5*time.Minute {
			return bad("timeout %q must be a duration up to 5m", s.Timeout)
		}
		w.timeout = d
	}
	if err := decodeStrict(s.Random, &w.random); err != nil {
		return nil, nil, err
	}
	if err := w.random.check(); err != nil {
		return bad("random: %v", err)
	}
	w.client = &http.Client{Timeout: w.timeout, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	return w, []string{s.HMACKey}, nil
}

// Sign returns the signature header value of a webhook body.
func Sign(key []byte, timestamp string, body []byte) string {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(timestamp))
	h.Write([]byte{'.'})
	h.Write(body)
	return "sha256=" + hex.EncodeToString(h.Sum(nil))
}

// call sends one step and returns the response body (bounded).
func (w *Webhook) call(ctx context.Context, j *rotation.Job, step string, value []byte) ([]byte, error) {
	key, err := j.Refs.Value(ctx, w.s.HMACKey)
	if err != nil {
		return nil, fmt.Errorf("webhook signing key %q: %w", w.s.HMACKey, err)
	}
	defer clear(key)
	body, err := json.Marshal(WebhookRequest{Step: step, Path: j.Path, RotationID: j.RotationID, Seq: j.Seq, Value: string(value)})
	if err != nil {
		return nil, err
	}
	defer clear(body)
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.s.URL, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(key, ts, body))
	resp, err := w.client.Do(req)
	if err != nil {
		// url.Error names the URL and the cause, never the body.
		return nil, fmt.Errorf("webhook %s: %w", step, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("webhook %s: read answer: %w", step, err)
	}
	if resp.StatusCode/100 != 2 {
		// The answer's body is not quoted: the receiver may echo what it was sent.
		return nil, fmt.Errorf("webhook %s: HTTP %d", step, resp.StatusCode)
	}
	return out, nil
}

// Generate calls create; the endpoint may return the new value (for systems that mint their
// own keys), otherwise keyward generates one.
func (w *Webhook) Generate(ctx context.Context, j *rotation.Job) ([]byte, error) {
	out, err := w.call(ctx, j, HookCreate, nil)
	if err != nil {
		return nil, err
	}
	defer clear(out)
	var cr WebhookCreateResponse
	if len(bytes.TrimSpace(out)) > 0 {
		if err := json.Unmarshal(out, &cr); err != nil {
			return nil, fmt.Errorf("webhook create: the answer is not JSON {\"value\": ...}")
		}
	}
	if cr.Value != "" {
		return []byte(cr.Value), nil
	}
	return w.random.generate()
}

// Apply calls set.
func (w *Webhook) Apply(ctx context.Context, j *rotation.Job, value []byte) error {
	_, err := w.call(ctx, j, HookSet, value)
	return err
}

// Test calls test.
func (w *Webhook) Test(ctx context.Context, j *rotation.Job, value []byte) error {
	_, err := w.call(ctx, j, HookTest, value)
	return err
}

// Finish calls finish.
func (w *Webhook) Finish(ctx context.Context, j *rotation.Job, value []byte) error {
	_, err := w.call(ctx, j, HookFinish, value)
	return err
}

// Revoke calls revoke with the old value (nothing to revoke if it can no longer be read).
func (w *Webhook) Revoke(ctx context.Context, j *rotation.Job, old, _ []byte) error {
	if old == nil {
		return nil
	}
	_, err := w.call(ctx, j, HookRevoke, old)
	return err
}

// Discard calls revoke with the pending value.
func (w *Webhook) Discard(ctx context.Context, j *rotation.Job, pending []byte) error {
	_, err := w.call(ctx, j, HookRevoke, pending)
	return err
}
