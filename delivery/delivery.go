// Package delivery sends webhook events (docs/webhooks.md): the loop that
// claims rows of webhook_outbox (the ids of the jobs that statements ended,
// written with their outcome), expands each into its events (the owners'
// endpoints that take them), sends each signed (Standard Webhooks, package
// webhook) through the SSRF-safe client, and records all of a row's
// attempts at once in webhook_deliveries while deleting the row; and that
// claims the due rows of webhook_deliveries (retries, test events, replays)
// and records each attempt.
//
// It runs in the API process (jobsd serve, jobsd dev), or alone in jobsd
// deliver at a lower CPU priority, off the worker's path: the worker only
// writes one outbox row per outcome statement.
// Delivery is at least once: an outbox row's claim, and a delivery's, is
// committed before the requests and holds it past their deadline, so a
// process that dies mid-send leaves it to be claimed again, and its events
// are sent again with the same webhook-id. One endpoint never delays
// another: each endpoint has at most PerEndpoint attempts in flight; an
// event that has waited a second for a slot of an endpoint that answered
// nothing in that second (a slow or dead one) is handed to the retry path
// (a PENDING delivery, due at once) rather than hold its outbox row; and
// an endpoint with attempts in flight is left out of the next claim of due
// deliveries. While the worker burns down a backlog (Config.YieldBacklog
// jobs due and unclaimed), the loop claims nothing, so that the database
// work of delivering does not slow it, unless its oldest waiting work has
// waited Config.YieldMax (yield.go).
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
	"slices"
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
	// DefaultYieldBacklog and DefaultYieldMax: while 1,000 jobs or more are
	// due and unclaimed, the loop claims nothing for up to 30 s of an
	// event's wait (see Config.YieldBacklog).
	DefaultYieldBacklog = 1000
	DefaultYieldMax     = 30 * time.Second
)

// yieldRecheck is how often a yielding loop asks again whether the queue
// still has a backlog (and how long a verdict is kept): two small
// statements four times a second, against the thousands a second that
// delivering during a burn-down costs.
const yieldRecheck = 250 * time.Millisecond

// maxResponseBytes is how much of an answer's body is read (and then
// dropped): enough to reuse the connection for small answers.
const maxResponseBytes = 64 << 10

// Config configures Run.
type Config struct {
	Store *store.Store
	// Sealer opens the endpoints' sealed secrets.
	Sealer *webhook.Sealer
	// Client sends the requests; nil (what jobsd runs) means
	// webhook.NewClient with AllowPrivate, Timeout, and as many idle
	// connections per host as Concurrency.
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
	// YieldBacklog: while at least this many jobs are due and unclaimed
	// (the worker is burning a backlog down), the loop claims neither
	// outbox rows nor due deliveries, unless its oldest waiting work has
	// waited YieldMax: the database work that delivering causes (expanding
	// outbox rows, recording each event) would take PostgreSQL's CPU from
	// the burn-down at full priority, whatever the deliverer's own
	// priority. 0 never yields (the zero Config; jobsd's default is
	// DefaultYieldBacklog).
	YieldBacklog int
	// YieldMax bounds the extra wait that yielding gives an event; 0 means
	// DefaultYieldMax.
	YieldMax time.Duration
	Log      *slog.Logger
	Metrics  *metrics.Webhooks
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
	if c.YieldMax <= 0 {
		c.YieldMax = DefaultYieldMax
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Client == nil {
		c.Client = webhook.NewClient(webhook.ClientOptions{AllowPrivate: c.AllowPrivate, Timeout: c.Timeout, IdleConnsPerHost: c.Concurrency})
	}
	if c.Sealer == nil {
		c.Sealer, _ = webhook.NewSealer("")
	}
}

// Run sends events until ctx ends, then waits for the attempts in flight
// (each bounded by the client's timeout) and records them.
func Run(ctx context.Context, cfg Config) {
	cfg.defaults()
	l := &loop{cfg: cfg, busy: map[uuid.UUID]int{}, done: make(chan ended, cfg.Concurrency), waiting: map[uuid.UUID][]*queued{}, gone: map[uuid.UUID]time.Time{}, lastEnd: map[uuid.UUID]time.Time{},
		work: make(chan func(), cfg.Concurrency), targets: targets{m: map[uuid.UUID]*target{}}}
	defer close(l.work) // the senders return
	l.run(ctx)
}

type loop struct {
	cfg     Config
	busy    map[uuid.UUID]int // endpoint -> attempts in flight
	running int
	done    chan ended // an attempt ended
	wg      sync.WaitGroup
	// work feeds the senders, goroutines that each make one attempt at a
	// time and live as long as the loop; senders counts them (never more
	// than Concurrency). A goroutine per attempt grew a fresh stack through
	// the HTTP client's calls for every event.
	work    chan func()
	senders int
	targets targets

	// waiting holds the outbox events not yet started, per endpoint, in
	// the order claimed; queuedN counts them.
	waiting map[uuid.UUID][]*queued
	order   []uuid.UUID // endpoints with events waiting, served in turn
	queuedN int
	// outboxDry and retryDry: the last claim of each found nothing; the
	// next waits for a wake-up or a tick rather than ask after every
	// attempt.
	outboxDry, retryDry bool
	// gone: endpoints that answered 410, until when their events are not
	// sent (their record disables them).
	gone map[uuid.UUID]time.Time
	// lastEnd: when an attempt of the endpoint last ended (for spill).
	lastEnd map[uuid.UUID]time.Time
	// yield is whether the loop holds back its claims for the queue's
	// backlog (yield.go).
	yield yieldState
}

// ended is an attempt that ended: its endpoint, and for an outbox event,
// its batch, index and result.
type ended struct {
	endpoint uuid.UUID
	batch    *batch
	i        int
	result   store.AttemptResult
}

// batch is a claimed outbox row being sent: the record of each of its
// events, and how many are still to end.
type batch struct {
	id   int64
	recs []store.EventRecord
	left int
}

// queued is an outbox event waiting for its endpoint's slot.
type queued struct {
	b     *batch
	i     int
	since time.Time
}

// spillAfter is how long an outbox event waits for a slot of its endpoint,
// while that endpoint ends no attempt, before it is handed to the retry
// path (a PENDING delivery due at once), so that a slow endpoint holds
// neither its outbox row nor the claims of other endpoints' events for
// longer.
const spillAfter = time.Second

// maxQueued bounds the outbox events waiting for a slot: no outbox row is
// claimed while more wait.
func (l *loop) maxQueued() int { return max(8*l.cfg.Concurrency, 256) }

func (l *loop) run(ctx context.Context) {
	tick := time.NewTicker(l.cfg.Poll)
	defer tick.Stop()
	l.yield.timer = time.NewTimer(yieldRecheck)
	defer l.yield.timer.Stop()
	defer func() { l.setYielding(false, time.Now()) }()
	var lastPrune, lastBacklog time.Time
	for {
		if !l.claim(ctx) && ctx.Err() == nil {
			select { // the database is away: wait for the next tick
			case <-ctx.Done():
			case <-tick.C:
			}
		}
		now := time.Now()
		l.spill(now, false)
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
			l.stop(ctx)
			return
		case e := <-l.done:
			l.ended(ctx, e)
		drain:
			for {
				select {
				case e := <-l.done:
					l.ended(ctx, e)
				default:
					break drain
				}
			}
		case <-l.cfg.Wake:
			l.outboxDry, l.retryDry = false, false
		case <-tick.C:
			l.outboxDry, l.retryDry = false, false
		case <-l.recheck():
		}
	}
}

// stop hands the events still waiting to the retry path, waits for the
// attempts in flight, records their outbox rows, and waits for the
// records.
func (l *loop) stop(ctx context.Context) {
	l.spill(time.Now(), true)
	for l.running > 0 {
		l.ended(ctx, <-l.done)
	}
	l.wg.Wait()
}

func (l *loop) ended(ctx context.Context, e ended) {
	l.lastEnd[e.endpoint] = time.Now()
	l.running--
	if l.busy[e.endpoint]--; l.busy[e.endpoint] <= 0 {
		delete(l.busy, e.endpoint)
	}
	if e.batch != nil {
		e.batch.recs[e.i].Attempted, e.batch.recs[e.i].Result = true, e.result
		l.settled(ctx, e.batch)
		if e.result.Gone {
			l.goneEndpoint(e.endpoint)
		}
	}
}

// goneEndpoint: the endpoint answered 410 and is being disabled: its
// waiting events are not sent but handed over, and its record ends them
// FAILED with the endpoint's other pending events; for a while, events of
// it claimed meanwhile (before the record commits) are handed over too.
func (l *loop) goneEndpoint(ep uuid.UUID) {
	l.gone[ep] = time.Now().Add(claimLease(l.cfg.Timeout))
	for _, e := range l.waiting[ep] {
		l.queuedN--
		l.settled(context.Background(), e.b)
	}
	delete(l.waiting, ep)
	l.order = slices.DeleteFunc(l.order, func(x uuid.UUID) bool { return x == ep })
}

// settled counts one more event of b as settled (sent or handed over),
// and records b once every event is.
func (l *loop) settled(ctx context.Context, b *batch) {
	if b.left--; b.left > 0 {
		return
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		l.record(context.WithoutCancel(ctx), b)
	}()
}

// record writes an outbox row's events and deletes the row. On failure the
// row's claim runs out and it is sent again (at least once, same ids).
func (l *loop) record(ctx context.Context, b *batch) {
	disabled, err := l.cfg.Store.RecordOutbox(ctx, b.id, b.recs, l.cfg.Disable)
	if err != nil {
		l.cfg.Log.Warn("webhooks: record outbox events; they are sent again when the claim runs out", "outbox_id", b.id, "err", err)
		return
	}
	for _, ep := range disabled {
		l.cfg.Metrics.Disabled()
		l.cfg.Log.Info("webhooks: endpoint disabled", "webhook_id", ep)
	}
}

// spill hands to the retry path the waiting outbox events of endpoints
// that are slow: that have waited spillAfter while their endpoint ended no
// attempt for as long, or that have waited maxWait whatever (all of them
// when all is set). An endpoint that keeps answering keeps its events
// while it works through them.
func (l *loop) spill(now time.Time, all bool) {
	for ep, t := range l.lastEnd {
		if now.Sub(t) >= spillAfter && l.busy[ep] == 0 && len(l.waiting[ep]) == 0 {
			delete(l.lastEnd, ep)
		}
	}
	if l.queuedN == 0 {
		return
	}
	maxWait := max(claimLease(l.cfg.Timeout)-l.cfg.Timeout-5*time.Second, spillAfter)
	for ep, q := range l.waiting {
		stalled := now.Sub(l.lastEnd[ep]) >= spillAfter
		n := 0
		for n < len(q) && (all || stalled && now.Sub(q[n].since) >= spillAfter || now.Sub(q[n].since) >= maxWait) {
			n++
		}
		if n == 0 {
			continue
		}
		for _, e := range q[:n] {
			l.queuedN--
			l.settled(context.Background(), e.b)
		}
		if n == len(q) {
			delete(l.waiting, ep)
		} else {
			l.waiting[ep] = q[n:]
		}
	}
	l.order = slices.DeleteFunc(l.order, func(ep uuid.UUID) bool { return len(l.waiting[ep]) == 0 })
}

// claimLease is how long a claim holds a delivery or an outbox row: past
// the attempts' deadline (and an outbox event's wait for its slot) with
// room to build the body and record the result. A sender that dies leaves
// its deliveries due again after it.
func claimLease(timeout time.Duration) time.Duration { return 2*timeout + 5*time.Second }

// claim starts waiting outbox events, claims outbox rows while few wait,
// then claims due deliveries with the slots left. It reports false when a
// claim failed.
func (l *loop) claim(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	l.startWaiting(ctx)
	wantOutbox := !l.outboxDry && l.queuedN < l.maxQueued() && l.running < l.cfg.Concurrency
	wantDue := !l.retryDry && l.running < l.cfg.Concurrency
	if (wantOutbox || wantDue) && !l.mayClaim(ctx) {
		return true
	}
	ok := true
	if wantOutbox {
		ok = l.claimOutbox(ctx)
		l.startWaiting(ctx)
	}
	if !l.retryDry && l.running < l.cfg.Concurrency {
		ok = l.claimDue(ctx) && ok
	}
	return ok
}

// claimOutbox claims outbox rows and queues their events.
func (l *loop) claimOutbox(ctx context.Context) bool {
	rows := 4 // catching up after a pause; one at a time while events wait
	if l.queuedN > 0 {
		rows = 1
	}
	batches, err := l.cfg.Store.ClaimOutbox(ctx, rows, claimLease(l.cfg.Timeout))
	if err != nil {
		if ctx.Err() == nil {
			l.cfg.Log.Warn("webhooks: claim outbox", "err", err)
		}
		return false
	}
	l.outboxDry = len(batches) == 0
	now := time.Now()
	for _, ob := range batches {
		b := &batch{id: ob.ID, recs: make([]store.EventRecord, len(ob.Events)), left: len(ob.Events) + 1}
		for i := range ob.Events {
			b.recs[i].Event = &ob.Events[i]
			ep := ob.Events[i].EndpointID
			if until, ok := l.gone[ep]; ok {
				if now.Before(until) {
					b.left--
					continue
				}
				delete(l.gone, ep)
			}
			if len(l.waiting[ep]) == 0 {
				l.order = append(l.order, ep)
			}
			l.waiting[ep] = append(l.waiting[ep], &queued{b: b, i: i, since: now})
			l.queuedN++
		}
		l.settled(ctx, b) // the +1: a row without events is recorded (deleted) at once
	}
	return true
}

// startWaiting starts the waiting outbox events that free slots allow, the
// endpoints taking turns.
func (l *loop) startWaiting(ctx context.Context) {
	for len(l.order) > 0 && l.running < l.cfg.Concurrency {
		started := false
		for _, ep := range l.order {
			if l.running >= l.cfg.Concurrency {
				break
			}
			q := l.waiting[ep]
			if len(q) == 0 || l.busy[ep] >= l.cfg.PerEndpoint {
				continue
			}
			e := q[0]
			l.waiting[ep] = q[1:]
			l.queuedN--
			l.startEvent(ctx, e.b, e.i)
			started = true
		}
		l.order = slices.DeleteFunc(l.order, func(ep uuid.UUID) bool {
			if len(l.waiting[ep]) == 0 {
				delete(l.waiting, ep)
				return true
			}
			return false
		})
		if !started {
			return
		}
	}
}

// startEvent sends event i of b.
func (l *loop) startEvent(ctx context.Context, b *batch, i int) {
	ev := b.recs[i].Event
	l.running++
	l.busy[ev.EndpointID]++
	l.send(func() {
		res := l.attemptEvent(context.WithoutCancel(ctx), ev)
		l.done <- ended{endpoint: ev.EndpointID, batch: b, i: i, result: res}
	})
}

// send hands an attempt, already counted in running, to a sender. There
// are at least as many senders as attempts running, and work holds as
// many, so it never waits.
func (l *loop) send(attempt func()) {
	l.wg.Add(1)
	for l.senders < l.running {
		l.senders++
		go func() {
			for f := range l.work {
				f()
			}
		}()
	}
	l.work <- func() {
		defer l.wg.Done()
		attempt()
	}
}

// attemptEvent sends an outbox event (its first attempt); the batch
// records it.
func (l *loop) attemptEvent(ctx context.Context, ev *store.OutboxEvent) store.AttemptResult {
	start := time.Now()
	body, err := l.jobBody(ev.EventType, ev.OccurredAt, &ev.Job)
	code := 0
	if err == nil {
		code, err = l.post(ctx, ev.Target, ev.ID, body, start)
	}
	res := l.result(start, code, err, 0)
	l.cfg.Metrics.Attempt(outcome(res), res.Latency, time.Since(ev.OccurredAt))
	return res
}

// claimDue claims due deliveries (retries, test events, replays) with the
// free slots and starts each attempt. It reports false when the claim
// failed.
func (l *loop) claimDue(ctx context.Context) bool {
	free := l.cfg.Concurrency - l.running
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
	l.retryDry = len(due) == 0
	for i := range due {
		d := due[i]
		l.running++
		l.busy[d.EndpointID]++
		l.send(func() {
			l.attempt(context.WithoutCancel(ctx), &d)
			l.done <- ended{endpoint: d.EndpointID}
		})
	}
	return true
}

// attempt sends one due delivery and records the result. It runs to the
// end even when the loop is stopping (bounded by the client's timeout), so
// an answer received is recorded.
func (l *loop) attempt(ctx context.Context, d *store.DueDelivery) {
	start := time.Now()
	target := store.Target{EndpointID: d.EndpointID, UserID: d.UserID, URL: d.URL, Secret: d.Secret, PreviousSecret: d.PreviousSecret}
	body, err := l.body(ctx, d)
	code := 0
	if err == nil {
		code, err = l.post(ctx, target, d.ID, body, start)
	}
	res := l.result(start, code, err, d.Attempts)
	res.ID = d.ID
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

// result is how an attempt that started at start went, given the answer's
// status code or the error, and the wait before the next attempt when it
// failed and may be retried (attempts is the delivery's attempts so far,
// this one included).
func (l *loop) result(start time.Time, code int, err error, attempts int) store.AttemptResult {
	res := store.AttemptResult{At: start, Latency: time.Since(start), StatusCode: code}
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
		res.Retry = retryAfter(l.cfg.Schedule, max(attempts, 1))
	}
	return res
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

// post signs and POSTs body to the target as event id, and returns the
// answer's status.
func (l *loop) post(ctx context.Context, t store.Target, id uuid.UUID, body []byte, now time.Time) (int, error) {
	signer, err := l.targets.get(t, l.open)
	if err != nil {
		return 0, err
	}
	if c := l.cfg.Client.Timeout; c <= 0 || c > l.cfg.Timeout {
		// webhook.NewClient's own Timeout bounds the attempt already: a
		// second deadline cost a context and a timer more per event.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, l.cfg.Timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(body))
	if err != nil {
		return 0, permanentError{"the request could not be built: " + err.Error()}
	}
	req.Header["Content-Type"] = []string{"application/json"}
	req.Header["User-Agent"] = []string{"jobsd-webhooks"}
	signer.SetHeaders(req.Header, id.String(), now, body)
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

// open checks the endpoint's URL against this process's settings and
// opens its signing keys (the current one, and the previous one during a
// rotation's grace period) into a Signer.
func (l *loop) open(t store.Target) (*webhook.Signer, error) {
	// A URL this process refuses, or a secret it cannot open, is its
	// configuration (JOBS_WEBHOOK_ALLOW_PRIVATE, JOBS_WEBHOOK_KEY) differing
	// from the process that saved the endpoint: retried, so that fixing it
	// loses nothing.
	if err := webhook.CheckURL(t.URL, l.cfg.AllowPrivate); err != nil {
		return nil, fmt.Errorf("refused by this API process's settings: %w", err)
	}
	k, err := l.cfg.Sealer.Open(t.Secret)
	if err != nil {
		l.cfg.Log.Error("webhooks: a signing secret cannot be opened: is JOBS_WEBHOOK_KEY the key it was sealed with?", "webhook_id", t.EndpointID)
		return nil, errors.New("the signing secret cannot be opened on this API process (JOBS_WEBHOOK_KEY)")
	}
	keys := [][]byte{k}
	if t.PreviousSecret != nil {
		if p, err := l.cfg.Sealer.Open(t.PreviousSecret); err == nil {
			keys = append(keys, p)
		}
	}
	return webhook.NewSigner(keys), nil
}

// body is a due delivery's JSON: the job as GET /api/jobs/{id} answers it
// now (for a test event, the endpoint's id).
func (l *loop) body(ctx context.Context, d *store.DueDelivery) ([]byte, error) {
	if d.JobID == nil {
		data, _ := json.Marshal(map[string]string{"webhookId": d.EndpointID.String()})
		return appendEvent(nil, d.EventType, timestamp.New(d.OccurredAt), data, false)
	}
	j, err := l.cfg.Store.Get(ctx, store.OwnedBy(d.UserID), *d.JobID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, permanentError{"the job no longer exists (deleted after its retention)"}
	}
	if err != nil {
		return nil, errors.New("the job could not be read")
	}
	jc := *j // Get's job is shared and must not be modified
	return l.jobBody(d.EventType, d.OccurredAt, &jc)
}

// jobBody is a job event's JSON, with j as GET /api/jobs/{id} answers it,
// without its result when that is larger than MaxResultBytes. It may
// clear j.Result.
func (l *loop) jobBody(eventType string, occurred time.Time, j *job.Job) ([]byte, error) {
	omitted := len(j.Result) > l.cfg.MaxResultBytes
	if omitted {
		j.Result = nil
	}
	data, err := l.cfg.EncodeJob(j)
	if err != nil {
		return nil, permanentError{"the job could not be encoded: " + err.Error()}
	}
	return appendEvent(make([]byte, 0, len(data)+96), eventType, timestamp.New(occurred), data, omitted)
}

// appendEvent appends the event's JSON to b: the bytes json.Marshal gives
// of an event holding data, given data as compact JSON with encoding/json's
// escaping (what EncodeJob returns). Built by hand: json.Marshal scanned
// and compacted data once more, the job a second time per event.
func appendEvent(b []byte, eventType string, ts timestamp.Time, data []byte, resultOmitted bool) ([]byte, error) {
	t, err := json.Marshal(eventType)
	if err != nil {
		return nil, fmt.Errorf("encode event: %w", err)
	}
	b = append(b, `{"type":`...)
	b = append(b, t...)
	b = append(b, `,"timestamp":`...)
	if b, err = ts.AppendJSON(b); err != nil {
		return nil, fmt.Errorf("encode event: %w", err)
	}
	b = append(b, `,"data":`...)
	b = append(b, data...)
	if resultOmitted {
		b = append(b, `,"resultOmitted":true`...)
	}
	return append(b, '}'), nil
}

// recordBacklog sets the queue gauges.
func (l *loop) recordBacklog(ctx context.Context) {
	if l.cfg.Metrics == nil {
		return
	}
	b, err := l.cfg.Store.DeliveryBacklog(ctx)
	if err != nil {
		return
	}
	l.cfg.Metrics.Backlog(b.Due, b.OutboxJobs, b.Oldest)
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

// targets caches, per endpoint, what open makes of it (its URL checked,
// its keys opened into a Signer), for as long as its URL and sealed
// secrets stay the same: the checks and the HMAC key schedule once per
// endpoint, not per event. Safe for concurrent use.
type targets struct {
	mu sync.Mutex
	m  map[uuid.UUID]*target
}

type target struct {
	url              string
	secret, previous []byte
	signer           *webhook.Signer
}

// maxTargets bounds the cache; it starts again empty when full.
const maxTargets = 4096

// get returns the Signer of t, from open when t is not cached as it is. A
// refusal is not cached: open logs it each time.
func (c *targets) get(t store.Target, open func(store.Target) (*webhook.Signer, error)) (*webhook.Signer, error) {
	c.mu.Lock()
	e := c.m[t.EndpointID]
	c.mu.Unlock()
	if e != nil && e.url == t.URL && bytes.Equal(e.secret, t.Secret) && bytes.Equal(e.previous, t.PreviousSecret) {
		return e.signer, nil
	}
	signer, err := open(t)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if len(c.m) >= maxTargets {
		clear(c.m)
	}
	c.m[t.EndpointID] = &target{url: t.URL, secret: t.Secret, previous: t.PreviousSecret, signer: signer}
	c.mu.Unlock()
	return signer, nil
}
