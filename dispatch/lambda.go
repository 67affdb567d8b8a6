package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/google/uuid"

	"github.com/jobsd/jobsd/store"
	"github.com/jobsd/jobsd/worker"
)

// Config is what the Lambda function needs.
type Config struct {
	// Worker is the worker's configuration: Store, Handlers, Classify and
	// durations (Lease, Heartbeat, JobTimeout, Grace, backoff). A fresh
	// worker is made from it for each invocation.
	Worker worker.Config
	Queue  *Queue
	Log    *slog.Logger
	// Reserve is the time kept before the invocation's deadline to write
	// outcomes and send retries (5 s): attempts end that much earlier if the
	// function's timeout would otherwise cut them.
	Reserve time.Duration
	// CapDelay is how long the message of a job left out by
	// Worker.UserConcurrency's cap (its user has that many jobs running)
	// waits before it comes back (30 s; at most MaxDelay).
	CapDelay time.Duration
	// Host is the registry's host for this instance: the function name and
	// log stream in Lambda ("": the host name).
	Host string
}

// Handler is the Lambda function: SQS batches of job messages and the
// maintenance schedule, told apart by their payload.
type Handler struct {
	cfg  Config
	log  *slog.Logger
	inst *instance
}

// NewHandler checks cfg and returns the function's handler.
func NewHandler(cfg Config) (*Handler, error) {
	if cfg.Worker.Store == nil || len(cfg.Worker.Handlers) == 0 || cfg.Queue == nil {
		return nil, errors.New("dispatch: Worker.Store, Worker.Handlers and Queue are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Reserve <= 0 {
		cfg.Reserve = 5 * time.Second
	}
	if cfg.CapDelay <= 0 {
		cfg.CapDelay = 30 * time.Second
	}
	// The claim here is the store's, so it needs the lease before
	// worker.New would default it: the same default.
	if cfg.Worker.Lease <= 0 {
		cfg.Worker.Lease = 30 * time.Second
	}
	cfg.Worker.Log = cfg.Log
	return &Handler{cfg: cfg, log: cfg.Log, inst: newInstance(cfg.Worker.Store, cfg.Host)}, nil
}

// ID is this instance's id in the worker registry, and the workerId of
// the jobs it claims.
func (h *Handler) ID() string { return h.inst.info.ID }

// Unregister removes this instance from the worker registry; call it when
// the runtime shuts the instance down (its SIGTERM).
func (h *Handler) Unregister(ctx context.Context) error {
	return h.cfg.Worker.Store.UnregisterProcess(ctx, h.inst.info.ID)
}

// register refreshes the instance's registry entry; a failure is only
// logged.
func (h *Handler) register(ctx context.Context) {
	if err := h.inst.register(context.WithoutCancel(ctx)); err != nil {
		h.log.Warn("worker registry: register failed", "err", err)
	}
}

// probe is just enough of an event to tell its kind.
type probe struct {
	Records []struct {
		EventSource string `json:"eventSource"`
	} `json:"Records"`
	Source string `json:"source"`
}

// Invoke is the function's entry point (lambda.Start): an SQS event is a
// batch of job messages; a scheduled event (source aws.events, as an
// EventBridge schedule sends) runs the maintenance round.
func (h *Handler) Invoke(ctx context.Context, payload json.RawMessage) (any, error) {
	var p probe
	if err := json.Unmarshal(payload, &p); err != nil {
		return nil, fmt.Errorf("read event: %w", err)
	}
	h.register(ctx)
	switch {
	case len(p.Records) > 0 && p.Records[0].EventSource == "aws:sqs":
		var ev events.SQSEvent
		if err := json.Unmarshal(payload, &ev); err != nil {
			return nil, fmt.Errorf("read SQS event: %w", err)
		}
		return h.HandleSQS(ctx, ev)
	case p.Source == "aws.events" || p.Source == "aws.scheduler":
		return h.Maintain(ctx)
	default:
		return nil, errors.New("unknown event: neither an SQS batch nor a scheduled event")
	}
}

// batch is one SQS event's messages by job.
type batch struct {
	ids      []uuid.UUID            // each job once, in message order
	messages map[uuid.UUID][]string // a job's message ids (duplicates share a fate)
	failed   map[string]bool
}

func (b *batch) fail(id uuid.UUID) {
	for _, m := range b.messages[id] {
		b.failed[m] = true
	}
}

func (b *batch) response() events.SQSEventResponse {
	resp := events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{}}
	for m := range b.failed {
		resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: m})
	}
	return resp
}

// readBatch parses the messages' bodies. A body that is not a job id can
// never succeed: it is logged and acknowledged rather than sent round until
// the dead-letter queue.
func (h *Handler) readBatch(ev events.SQSEvent) *batch {
	b := &batch{messages: map[uuid.UUID][]string{}, failed: map[string]bool{}}
	for _, r := range ev.Records {
		id, err := uuid.Parse(strings.TrimSpace(r.Body))
		if err != nil {
			h.log.Warn("message is not a job id; dropped", "message_id", r.MessageId, "body_bytes", len(r.Body))
			continue
		}
		if _, seen := b.messages[id]; !seen {
			b.ids = append(b.ids, id)
		}
		b.messages[id] = append(b.messages[id], r.MessageId)
	}
	return b
}

// HandleSQS runs the jobs a batch of messages names and reports the
// messages to deliver again (batchItemFailures): those whose job could not
// be claimed for a database error, whose outcome could not be written, or
// whose retry message could not be sent. Every other message is done with:
// its job ran, or was not runnable (finished, cancelled, held by another
// attempt, or gone) and is skipped, or waits for its backoff and was sent
// again for the rest of it, or was left out because its user is at
// Worker.UserConcurrency's cap and was sent again after CapDelay.
func (h *Handler) HandleSQS(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	b := h.readBatch(ev)
	if len(b.ids) == 0 {
		return b.response(), nil
	}
	w, err := worker.New(h.cfg.Worker)
	if err != nil {
		return events.SQSEventResponse{}, fmt.Errorf("start worker: %w", err)
	}
	// The claim is not cut short by the invocation's end (the store's
	// timeout bounds it), as in the worker: cancelled while its reply is
	// read, a committed claim would leave its jobs leased by nobody. It is
	// made under the instance's id, the one the registry lists.
	wc := h.cfg.Worker
	claims, err := wc.Store.ClaimIDsCapped(context.WithoutCancel(ctx), h.ID(), b.ids, wc.Lease, wc.UserConcurrency)
	if err != nil {
		h.log.Warn("claim failed; the batch will be delivered again", "jobs", len(b.ids), "err", err)
		for _, id := range b.ids {
			b.fail(id)
		}
		return b.response(), nil
	}
	h.resendWaiting(ctx, b, claims)
	for _, e := range h.run(ctx, w, claims) {
		h.settle(ctx, b, e)
	}
	return b.response(), nil
}

// run runs the claimed attempts, with the instance's registry entry
// showing them in flight meanwhile.
func (h *Handler) run(ctx context.Context, w *worker.Worker, claims []store.Claimed) []worker.Ended {
	if len(claims) == 0 {
		return nil
	}
	h.inst.running(len(claims))
	h.register(ctx)
	refreshCtx, stopRefresh := context.WithCancel(context.WithoutCancel(ctx))
	refreshed := make(chan struct{})
	go func() {
		defer close(refreshed)
		h.inst.refresh(refreshCtx, func(err error) { h.log.Warn("worker registry: register failed", "err", err) })
	}()
	jobCtx, cancel := h.jobContext(ctx)
	defer cancel()
	ended := w.RunClaimed(jobCtx, claims)
	stopRefresh()
	<-refreshed
	h.inst.running(0)
	h.register(ctx)
	return ended
}

// jobContext is the attempts' context: it outlives the invocation's
// cancellation but ends Reserve before the invocation's deadline, so that
// an attempt the function's timeout would cut ends as a timeout (a retry
// or a failure, written) instead. With the function's timeout above the
// attempt timeout plus Grace plus Reserve, as the template sets it, this
// never cuts an attempt; when the instance dies anyway, its claim already
// counted the attempt and the scheduled rescue takes the job back.
func (h *Handler) jobContext(ctx context.Context) (context.Context, context.CancelFunc) {
	jobCtx := context.WithoutCancel(ctx)
	if d, ok := ctx.Deadline(); ok {
		return context.WithDeadline(jobCtx, d.Add(-h.cfg.Reserve))
	}
	return context.WithCancel(jobCtx)
}

// resendWaiting sends again the messages of jobs that are still to run but
// were not claimed: for the rest of their wait when their backoff has not
// ended (the message came early: a wait longer than MaxDelay, or a
// duplicate), and after CapDelay when they are due now, which means their
// user is at Worker.UserConcurrency's cap (or, rarely, another claimer was
// taking them at that moment).
//
// A job at the cap is sent again as a new message with DelaySeconds rather
// than reported in batchItemFailures: a failure returns the same message,
// whose receive count grows with every return, and a user's long backlog
// behind a cap of 1 would push its messages past the dead-letter queue's
// maxReceiveCount (26) although nothing is wrong. A new message starts at a
// receive count of 0, so the count keeps meaning "this work could not be
// recorded"; the price is one SendMessage per pass.
func (h *Handler) resendWaiting(ctx context.Context, b *batch, claims []store.Claimed) {
	claimed := make(map[uuid.UUID]bool, len(claims))
	for _, c := range claims {
		claimed[c.ID] = true
	}
	var rest []uuid.UUID
	for _, id := range b.ids {
		if !claimed[id] {
			rest = append(rest, id)
		}
	}
	if len(rest) == 0 {
		return
	}
	waiting, err := h.cfg.Worker.Store.Waiting(ctx, rest)
	if err != nil {
		h.log.Warn("reading unclaimed jobs failed; their messages will be delivered again", "jobs", len(rest), "err", err)
		for _, id := range rest {
			b.fail(id)
		}
		return
	}
	for _, id := range rest {
		d, ok := waiting[id]
		if !ok {
			h.log.Info("job not runnable (finished, cancelled, held or gone); message acknowledged", "job_id", id)
			continue
		}
		if d <= 0 {
			h.log.Info("job due but not claimed (its user at the cap); message sent again", "job_id", id, "delay", h.cfg.CapDelay.String())
			d = h.cfg.CapDelay
		}
		if err := h.cfg.Queue.SendJob(ctx, id, d); err != nil {
			h.log.Warn("re-sending an early message failed", "job_id", id, "err", err)
			b.fail(id)
		}
	}
}

// settle decides the fate of an ended attempt's messages: a retry is sent
// again with its backoff as DelaySeconds; an outcome that could not be
// written is delivered again (its lease expires meanwhile, and the
// rescue or the next delivery goes on from there).
func (h *Handler) settle(ctx context.Context, b *batch, e worker.Ended) {
	id := e.Claim.ID
	switch {
	case e.WriteErr != nil:
		b.fail(id)
	case e.Written && e.Outcome.Kind == store.OutcomeRetry:
		if err := h.cfg.Queue.SendJob(ctx, id, e.Outcome.Backoff); err != nil {
			h.log.Warn("sending the retry's message failed; the message will be delivered again", "job_id", id, "err", err)
			b.fail(id)
		}
	}
}

// MaintainReport is what a maintenance round did.
type MaintainReport struct {
	Retried int `json:"retried"` // jobs rescued from expired leases, to be tried again
	Failed  int `json:"failed"`  // jobs rescued after their last attempt, now FAILED
	Sent    int `json:"sent"`    // outbox messages sent
	Deleted int `json:"deleted"` // finished jobs deleted past retention
}

// retentionRounds bounds how many DeleteFinished batches (of 1,000) one
// maintenance round runs: the schedule comes back soon.
const retentionRounds = 20

// Maintain is the scheduled round that a Lambda-only deployment runs
// instead of the long-lived worker's timers: rescue expired leases (the
// jobs returned to the queue get outbox rows), send the outbox, delete
// finished jobs past Worker.Retention, and prune the completion counts. It goes on past a failed step and
// returns the errors joined.
func (h *Handler) Maintain(ctx context.Context) (MaintainReport, error) {
	var r MaintainReport
	st := h.cfg.Worker.Store
	w, err := worker.New(h.cfg.Worker)
	if err != nil {
		return r, fmt.Errorf("start worker: %w", err)
	}
	var errs []error
	if r.Retried, r.Failed, err = st.RescueToOutbox(ctx, w.Backoff(1)); err != nil {
		errs = append(errs, err)
	}
	if r.Sent, err = Sweep(ctx, st, h.cfg.Queue); err != nil {
		errs = append(errs, err)
	}
	if ret := h.cfg.Worker.Retention; ret > 0 {
		for range retentionRounds {
			n, err := st.DeleteFinished(ctx, time.Now().Add(-ret), 1000)
			r.Deleted += n
			if err != nil {
				errs = append(errs, err)
			}
			if err != nil || n < 1000 {
				break
			}
		}
	}
	if err := st.PruneCompletions(ctx); err != nil {
		errs = append(errs, err)
	}
	h.log.Info("maintenance round", "retried", r.Retried, "failed", r.Failed, "sent", r.Sent, "deleted", r.Deleted)
	return r, errors.Join(errs...)
}
