// Package delivery sends webhook events (docs/webhooks.md): the loop that
// claims due rows of webhook_deliveries (the outbox that the statements
// ending jobs write), sends each signed (Standard Webhooks, package
// webhook) through the SSRF-safe client, and records every attempt.
//
// It runs in the API process (jobsd serve, jobsd dev), off the worker's
// path: the worker only writes the rows. Delivery is at least once: a
// claim is committed before the request and moves the row's next attempt
// past the request's deadline, so a process that dies mid-send leaves it
// due again. One endpoint never delays another: each endpoint has at most
// PerEndpoint attempts in flight, and an endpoint with attempts in flight
// is left out of the next claim.
package delivery

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/metrics"
	"github.com/jobsd/jobsd/store"
	"github.com/jobsd/jobsd/timestamp"
	"github.com/jobsd/jobsd/webhook"
)

// Defaults of Config.
const (
	DefaultConcurrency    = 32
	DefaultPerEndpoint    = 4
	DefaultPoll           = time.Second
	DefaultMaxResultBytes = 256 << 10
	DefaultRetention      = 7 * 24 * time.Hour
	// DefaultDisableAfter and DefaultDisableMinFailures: an endpoint whose
	// attempts have all failed for 3 days, at least 10 of them, is
	// disabled.
	DefaultDisableAfter       = 72 * time.Hour
	DefaultDisableMinFailures = 10
)

// maxResponseBytes is how much of an answer's body is read (and then
// dropped): enough to reuse the connection for small answers.
const maxResponseBytes = 64 << 10

// Config configures Run.
type Config struct {
	Store *store.Store
	// Sealer opens the endpoints' sealed secrets.
	Sealer *webhook.Sealer
	// Client sends the requests; webhook.NewClient's in production.
	Client *http.Client
	// AllowPrivate lets URLs be http (JOBS_WEBHOOK_ALLOW_PRIVATE); the
	// client checks addresses.
	AllowPrivate bool
	// EncodeJob is the job's JSON as GET /api/jobs/{id} answers it
	// (impl.WebhookJSON).
	EncodeJob func(*job.Job) ([]byte, error)
	// Concurrency bounds the attempts in flight; PerEndpoint those of one
	// endpoint.
	Concurrency, PerEndpoint int
	// Schedule is the wait before each retry; nil means DefaultSchedule.
	Schedule []time.Duration
	// Timeout bounds one attempt (the client's); a claim holds a row this
	// long plus a margin.
	Timeout time.Duration
	// Disable says when a failing endpoint is disabled.
	Disable store.DisablePolicy
	// MaxResultBytes: a job whose result is larger is sent without it,
	// with "resultOmitted": true.
	MaxResultBytes int
	// Poll is how often due deliveries are looked for without a wake-up.
	Poll time.Duration
	// Wake, when it receives, starts a claim at once (LISTEN
	// webhook_deliveries).
	Wake <-chan struct{}
	// Retention is how long ended deliveries are kept.
	Retention time.Duration
	Log       *slog.Logger
	Metrics   *metrics.Webhooks
}

func (c *Config) defaults() {
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.PerEndpoint <= 0 {
		c.PerEndpoint = DefaultPerEndpoint
	}
	if c.Schedule == nil {
		c.Schedule = DefaultSchedule
	}
	if c.Timeout <= 0 {
		c.Timeout = webhook.DefaultTimeout
	}
	if c.Disable.MinFailures <= 0 {
		c.Disable.MinFailures = DefaultDisableMinFailures
	}
	if c.Disable.After == 0 {
		c.Disable.After = DefaultDisableAfter
	}
	if c.MaxResultBytes <= 0 {
		c.MaxResultBytes = DefaultMaxResultBytes
	}
	if c.Poll <= 0 {
		c.Poll = DefaultPoll
	}
	if c.Retention <= 0 {
		c.Retention = DefaultRetention
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Client == nil {
		c.Client = webhook.NewClient(webhook.ClientOptions{AllowPrivate: c.AllowPrivate, Timeout: c.Timeout})
	}
	if c.Sealer == nil {
		c.Sealer, _ = webhook.NewSealer("")
	}
}

// Run sends due deliveries until ctx ends, then waits for the attempts in
// flight (each bounded by the client's timeout).
func Run(ctx context.Context, cfg Config) {
	cfg.defaults()
	l := &loop{cfg: cfg, busy: map[uuid.UUID]int{}, done: make(chan uuid.UUID, cfg.Concurrency)}
	l.run(ctx)
}

type loop struct {
	cfg     Config
	busy    map[uuid.UUID]int // endpoint -> attempts in flight
	running int
	done    chan uuid.UUID // an attempt ended: its endpoint
	wg      sync.WaitGroup
}

func (l *loop) run(ctx context.Context) {
	tick := time.NewTicker(l.cfg.Poll)
	defer tick.Stop()
	var lastPrune, lastBacklog time.Time
	for {
		if !l.claim(ctx) && ctx.Err() == nil {
			select { // the database is away: wait for the next tick
			case <-ctx.Done():
			case <-tick.C:
			}
		}
		now := time.Now()
		if now.Sub(lastBacklog) >= 5*time.Second {
			lastBacklog = now
			l.recordBacklog(ctx)
		}
		if now.Sub(lastPrune) >= time.Hour {
			lastPrune = now
			l.prune(ctx)
		}
		select {
		case <-ctx.Done():
			l.wg.Wait()
			return
		case ep := <-l.done:
			l.ended(ep)
		drain:
			for {
				select {
				case ep := <-l.done:
					l.ended(ep)
				default:
					break drain
				}
			}
		case <-l.cfg.Wake:
		case <-tick.C:
		}
	}
}

func (l *loop) ended(ep uuid.UUID) {
	l.running--
	if l.busy[ep]--; l.busy[ep] <= 0 {
		delete(l.busy, ep)
	}
}

// claimLease is how long a claim holds a delivery: past the attempt's
// deadline with room to build the body and record the result. A sender
// that dies leaves its deliveries due again after it.
func claimLease(timeout time.Duration) time.Duration { return 2*timeout + 5*time.Second }

// claim claims what the free slots allow and starts each attempt. It
// reports false when the claim failed.
func (l *loop) claim(ctx context.Context) bool {
	free := l.cfg.Concurrency - l.running
	if free <= 0 || ctx.Err() != nil {
		return true
	}
	busy := make([]uuid.UUID, 0, len(l.busy))
	for ep := range l.busy {
		busy = append(busy, ep)
	}
	due, err := l.cfg.Store.ClaimDeliveries(ctx, free, l.cfg.PerEndpoint, busy, claimLease(l.cfg.Timeout))
	if err != nil {
		if ctx.Err() == nil {
			l.cfg.Log.Warn("webhooks: claim deliveries", "err", err)
		}
		return false
	}
	for i := range due {
		d := due[i]
		l.running++
		l.busy[d.EndpointID]++
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.attempt(context.WithoutCancel(ctx), &d)
			l.done <- d.EndpointID
		}()
	}
	return true
}

// attempt sends one delivery and records the result. It runs to the end
// even when the loop is stopping (bounded by the client's timeout), so an
// answer received is recorded.
func (l *loop) attempt(ctx context.Context, d *store.DueDelivery) {
	start := time.Now()
	res := store.AttemptResult{ID: d.ID, At: start}
	code, err := l.send(ctx, d, start)
	res.Latency, res.StatusCode = time.Since(start), code
	switch {
	case err != nil:
		res.Error = err.Error()
	case code >= 200 && code < 300:
		res.Delivered = true
	case code == http.StatusGone:
		res.Gone, res.Error = true, "HTTP 410 Gone"
	default:
		res.Error = fmt.Sprintf("HTTP %d", code)
	}
	var perm permanentError
	if !res.Delivered && !res.Gone && !errors.As(err, &perm) {
		res.Retry = retryAfter(l.cfg.Schedule, d.Attempts)
	}
	disabled, rerr := l.cfg.Store.RecordAttempt(ctx, res, l.cfg.Disable)
	if rerr != nil {
		// The claim's deadline makes the delivery due again: at least once.
		l.cfg.Log.Warn("webhooks: record attempt", "delivery_id", d.ID, "err", rerr)
	}
	l.cfg.Metrics.Attempt(outcome(res), res.Latency, time.Since(d.OccurredAt))
	if disabled {
		l.cfg.Metrics.Disabled()
		l.cfg.Log.Info("webhooks: endpoint disabled", "webhook_id", d.EndpointID, "user_id", d.UserID, "last", res.Error)
	}
}

func outcome(r store.AttemptResult) string {
	switch {
	case r.Delivered:
		return metrics.WebhookDelivered
	case r.Retry > 0:
		return metrics.WebhookRetrying
	default:
		return metrics.WebhookFailed
	}
}

// permanentError is a failure that no retry can mend (the job is gone):
// the delivery ends FAILED with its text.
type permanentError struct{ text string }

func (e permanentError) Error() string { return e.text }

// send signs and POSTs the event and returns the answer's status.
func (l *loop) send(ctx context.Context, d *store.DueDelivery, now time.Time) (int, error) {
	// A URL this process refuses, or a secret it cannot open, is its
	// configuration (JOBS_WEBHOOK_ALLOW_PRIVATE, JOBS_WEBHOOK_KEY) differing
	// from the process that saved the endpoint: retried, so that fixing it
	// loses nothing.
	if err := webhook.CheckURL(d.URL, l.cfg.AllowPrivate); err != nil {
		return 0, fmt.Errorf("refused by this API process's settings: %w", err)
	}
	body, err := l.body(ctx, d)
	if err != nil {
		return 0, err
	}
	keys, err := l.keys(d)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(body))
	if err != nil {
		return 0, permanentError{"the request could not be built: " + err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "jobsd-webhooks")
	webhook.SetHeaders(req.Header, keys, d.ID.String(), now, body)
	resp, err := l.cfg.Client.Do(req)
	if err != nil {
		return 0, attemptError(err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBytes))
	resp.Body.Close()
	return resp.StatusCode, nil
}

// attemptError is what the owner reads of a request that got no answer:
// the kind of failure, without Go's wrapping.
func attemptError(err error) error {
	switch {
	case errors.Is(err, webhook.ErrForbiddenAddress):
		return errors.New("refused: the host resolves to an address that is not public")
	case errors.Is(err, webhook.ErrForbiddenURL):
		return errors.New("refused: the URL is not https")
	case errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "Client.Timeout"):
		return errors.New("timed out")
	case strings.Contains(err.Error(), "connection refused"):
		return errors.New("connection refused")
	case strings.Contains(err.Error(), "no such host"):
		return errors.New("host not found")
	case strings.Contains(err.Error(), "tls:") || strings.Contains(err.Error(), "x509:"):
		return errors.New("TLS handshake failed")
	}
	return errors.New("request failed")
}

// keys opens the endpoint's signing keys: the current one, and the
// previous one during a rotation's grace period.
func (l *loop) keys(d *store.DueDelivery) ([][]byte, error) {
	k, err := l.cfg.Sealer.Open(d.Secret)
	if err != nil {
		l.cfg.Log.Error("webhooks: a signing secret cannot be opened: is JOBS_WEBHOOK_KEY the key it was sealed with?", "webhook_id", d.EndpointID)
		return nil, errors.New("the signing secret cannot be opened on this API process (JOBS_WEBHOOK_KEY)")
	}
	keys := [][]byte{k}
	if d.PreviousSecret != nil {
		if p, err := l.cfg.Sealer.Open(d.PreviousSecret); err == nil {
			keys = append(keys, p)
		}
	}
	return keys, nil
}

// event is a delivery's body.
type event struct {
	Type      string          `json:"type"`
	Timestamp timestamp.Time  `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
	// ResultOmitted: the job's result is larger than the documented size
	// and was left out (data.result is null); GET the job for it.
	ResultOmitted bool `json:"resultOmitted,omitempty"`
}

// body is the event's JSON: the job as GET /api/jobs/{id} answers it now
// (for a test event, the endpoint's id).
func (l *loop) body(ctx context.Context, d *store.DueDelivery) ([]byte, error) {
	ev := event{Type: d.EventType, Timestamp: timestamp.New(d.OccurredAt)}
	if d.JobID == nil {
		ev.Data, _ = json.Marshal(map[string]string{"webhookId": d.EndpointID.String()})
		return json.Marshal(ev)
	}
	j, err := l.cfg.Store.Get(ctx, store.OwnedBy(d.UserID), *d.JobID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, permanentError{"the job no longer exists (deleted after its retention)"}
	}
	if err != nil {
		return nil, errors.New("the job could not be read")
	}
	if len(j.Result) > l.cfg.MaxResultBytes {
		j.Result, ev.ResultOmitted = nil, true
	}
	if ev.Data, err = l.cfg.EncodeJob(j); err != nil {
		return nil, permanentError{"the job could not be encoded: " + err.Error()}
	}
	return json.Marshal(ev)
}

// recordBacklog sets the queue gauges.
func (l *loop) recordBacklog(ctx context.Context) {
	if l.cfg.Metrics == nil {
		return
	}
	n, age, err := l.cfg.Store.DeliveryBacklog(ctx)
	if err != nil {
		return
	}
	l.cfg.Metrics.Backlog(n, age)
}

// prune deletes deliveries that ended more than Retention ago.
func (l *loop) prune(ctx context.Context) {
	cutoff := time.Now().Add(-l.cfg.Retention)
	for range 100 {
		n, err := l.cfg.Store.PruneDeliveries(ctx, cutoff, 1000)
		if err != nil || n < 1000 {
			return
		}
	}
}
