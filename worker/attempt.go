package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/trace"

	"github.com/jobsd/jobsd/metrics"
	"github.com/jobsd/jobsd/store"
	"github.com/jobsd/jobsd/tracing"
)

// attempt is one claimed attempt of a job. One runner owns it from claim
// to outcome; only the watchdog (or shutdown) may take it over, and only
// while its handler still runs past its deadline.
type attempt struct {
	claim   store.Claimed
	ctx     context.Context
	cancel  context.CancelFunc
	started time.Time
	// span is the attempt's span, nil while tracing is off; ended writes
	// the outcome on it and ends it.
	span trace.Span
	// series are its type's metrics, looked up once (nil: metrics off).
	series *metrics.Attempts

	// Guarded by Worker.mu. (The small fields last, together: the struct
	// then fits the allocator's 256-byte class.)

	// deadline is when the watchdog abandons the handler if it is still
	// running: the attempt's timeout plus Grace, or sooner once the attempt
	// is cancelled.
	deadline   time.Time
	state      attemptState
	handedBack bool // shutdown cancelled it: release, do not retry
	slotHeld   bool
}

type attemptState uint8

const (
	stateRunning   attemptState = iota // the handler runs
	stateEnding                        // its outcome waits for the writer
	stateAbandoned                     // the watchdog ended it; the handler's return is ignored
)

// stop cancels the attempt's context and brings its watchdog deadline
// forward to by. The caller holds Worker.mu.
func (a *attempt) stop(by time.Time) {
	a.cancel()
	if by.Before(a.deadline) {
		a.deadline = by
	}
}

// startAll starts the attempts of one claim. They start at one moment,
// read from the clock once: their deadlines, durations and pickup latencies
// count from it (a claim of hundreds of jobs is started within a
// millisecond, and a clock read per attempt, and per metric and context,
// showed in the worker's profile).
func (w *Worker) startAll(jobCtx context.Context, claimed []store.Claimed) {
	now := time.Now()
	for _, c := range claimed {
		w.start(jobCtx, c, now)
	}
	w.setInFlight()
}

// start registers a claimed attempt, started at now, and hands it to a
// runner. The caller sets the in-flight gauge (setInFlight) once it has
// started the claim's attempts.
func (w *Worker) start(jobCtx context.Context, c store.Claimed, now time.Time) {
	ctx, cancel := context.WithDeadline(jobCtx, now.Add(w.cfg.JobTimeout))
	var span trace.Span
	if tracing.Enabled() {
		ctx, span = startAttemptSpan(ctx, c, w.id)
	}
	series := w.cfg.Metrics.Attempts(string(c.Type))
	a := &attempt{claim: c, ctx: ctx, cancel: cancel, started: now, span: span, series: series,
		deadline: now.Add(w.cfg.JobTimeout + w.cfg.Grace), slotHeld: true}
	w.mu.Lock()
	w.inflight[c.ID] = a
	w.claims[c.Lease]++
	w.busy++
	w.mu.Unlock()
	w.pending.Add(1)
	series.Started()
	if c.Attempts == 1 {
		series.Pickup(now.Sub(c.CreatedAt))
	}
	// Never blocks: there are Concurrency slots and room for as many tasks.
	w.tasks <- a
}

// setInFlight sets the in-flight gauge to the attempts held now: once per
// claim and per batch of outcomes written, rather than per attempt.
func (w *Worker) setInFlight() {
	m := w.cfg.Metrics
	if m == nil {
		return
	}
	w.mu.Lock()
	n := len(w.inflight)
	w.mu.Unlock()
	m.SetInFlight(n)
}

// runner runs attempts one after another. Runners live as long as the
// worker, so a stack a handler grew serves the next one (with a goroutine
// per job, stack growth was 28% of the worker's CPU at a backlog). A runner
// whose handler was abandoned ends when (if ever) the handler returns: the
// watchdog started another in its place.
//
// The runner waits for attempts with runnerStackReserve bytes of its stack
// in use: the garbage collector halves the stack of every goroutine that
// uses less than a quarter of it, and a runner's handler then grew it back
// (8-9% of the worker's CPU at a backlog went to copying runner stacks).
//
// With tracing on, the reserve is twice as large: a sampled attempt's model
// call starts its span through the SDK's sampler and span constructor,
// deeper than an 8 KB stack holds, and every such runner's stack was grown
// to 16 KB and, at the next collection, halved again (at 1% sampling,
// copying stacks was ~0.13 µs of the worker's CPU per job, a tenth of what
// metrics and tracing added). Runners then keep 16 KB stacks.
func (w *Worker) runner() {
	if tracing.Enabled() {
		w.runTracedAttempts()
		return
	}
	w.runAttemptsReserving()
}

// runnerStackReserve keeps runner stacks of up to 4 times its size.
const runnerStackReserve = 2 << 10

// runAttemptsReserving and runTracedAttempts are apart so that each
// reserves its own size (a function's frame holds all its arrays).
//
//go:noinline
func (w *Worker) runAttemptsReserving() {
	var reserve [runnerStackReserve]byte
	w.runAttempts(reserve[:])
}

//go:noinline
func (w *Worker) runTracedAttempts() {
	var reserve [2 * runnerStackReserve]byte
	w.runAttempts(reserve[:])
}

//go:noinline
func (w *Worker) runAttempts(_ []byte) {
	for a := range w.tasks {
		if !w.run(a) {
			return
		}
	}
}

// run runs one attempt and queues its outcome; false means the watchdog
// abandoned it meanwhile, and the runner must end.
func (w *Worker) run(a *attempt) bool {
	result, err := w.call(a.ctx, a.claim)
	if err != nil && errors.Is(a.ctx.Err(), context.DeadlineExceeded) && !errors.Is(err, context.DeadlineExceeded) {
		// The attempt's deadline (JobTimeout) passed. Handlers and model
		// providers turn it into errors of their own; tell the classifier
		// what happened, so the job says "Job attempt timed out".
		err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	w.mu.Lock()
	if a.state == stateAbandoned {
		w.stuck--
		w.mu.Unlock()
		w.log.Warn("an abandoned handler returned; its result is dropped",
			append([]any{"job_id", a.claim.ID, "err", err}, traceArgs(a.span)...)...)
		return false
	}
	a.state = stateEnding
	handedBack := a.handedBack
	w.mu.Unlock()
	w.enqueue(w.end(a, result, err, handedBack))
	return true
}

// end turns an attempt's result or error into its ending: the outcome to
// write (a release when shutdown handed the attempt back) and, for an
// error, the client's text, which the metrics classify.
func (w *Worker) end(a *attempt, result []byte, err error, handedBack bool) ending {
	c := a.claim
	e := ending{a: a, err: err, o: store.Outcome{ID: c.ID, Lease: c.Lease}}
	switch {
	case handedBack:
		e.o.Kind = store.OutcomeRelease
	case err == nil:
		e.o.Kind, e.o.Result = store.OutcomeCompleted, result
	default:
		retryable, msg := w.cfg.Classify(err)
		e.message = msg
		if retryable && c.Attempts < c.MaxAttempts {
			e.o.Kind, e.o.Backoff, e.o.Error = store.OutcomeRetry, w.backoff(c.Attempts), msg
		} else {
			e.o.Kind, e.o.Error = store.OutcomeFailed, msg
		}
	}
	return e
}

// call runs the handler, turning a panic into an error and checking that
// the result is a JSON object.
func (w *Worker) call(ctx context.Context, c store.Claimed) (result json.RawMessage, err error) {
	h, ok := w.cfg.Handlers[c.Type]
	if !ok {
		return nil, fmt.Errorf("no handler for job type %s", c.Type)
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panic: %v\n%s", p, debug.Stack())
		}
	}()
	result, err = h(ctx, Attempt{
		ID: c.ID, UserID: c.UserID, Type: c.Type, Input: c.Input,
		Attempt: c.Attempts, MaxAttempts: c.MaxAttempts,
	})
	if err != nil {
		return nil, err
	}
	if !store.ValidJSONObject(result) {
		return nil, errors.New("handler result is not a JSON object")
	}
	return result, nil
}

// freeSlot gives a's slot back (once) and wakes the claim loop.
func (w *Worker) freeSlot(a *attempt) {
	w.mu.Lock()
	freed := a.slotHeld
	if freed {
		a.slotHeld = false
		w.busy--
	}
	w.mu.Unlock()
	if freed {
		w.poke()
	}
}

// ended drops an attempt whose outcome was written (ok: the fence held) or
// could not be, at now: its context, its place in inflight, its slot. The
// caller sets the in-flight gauge (setInFlight) once it has ended its
// batch.
func (w *Worker) ended(e ending, ok bool, werr error, now time.Time) {
	a := e.a
	a.cancel()
	w.mu.Lock()
	delete(w.inflight, a.claim.ID)
	w.claimEnded(a.claim.Lease, werr != nil)
	w.mu.Unlock()
	w.freeSlot(a)
	observe(e, ok, werr, now)
	if ok && e.o.Kind == store.OutcomeRetry {
		// Nothing notifies when a backoff ends: look again then, rather
		// than at the next fallback poll.
		time.AfterFunc(e.o.Backoff, w.poke)
	}
	w.logOutcome(e, ok, werr)
	endAttemptSpan(e, ok, werr)
	if w.onEnded != nil {
		w.onEnded(e, ok, werr)
	}
	w.pending.Done()
}

// claimEnded counts one more attempt of the claim (its lease) ended, with
// its outcome unwritten when the write failed; once all have, the claim's
// lease is released unless one was unwritten. w.mu must be held.
func (w *Worker) claimEnded(lease uuid.UUID, unwritten bool) {
	if unwritten {
		w.unwritten[lease] = true
	}
	if w.claims[lease]--; w.claims[lease] > 0 {
		return
	}
	delete(w.claims, lease)
	if w.unwritten[lease] {
		delete(w.unwritten, lease)
		return
	}
	w.released = append(w.released, lease)
}

// observe records an attempt ended at now in its type's metrics.
func observe(e ending, ok bool, werr error, now time.Time) {
	if e.a.series == nil {
		return
	}
	outcome := metrics.OutcomeLost // not written: cancelled, rescued, or the write failed
	if ok && werr == nil {
		switch e.o.Kind {
		case store.OutcomeCompleted:
			outcome = metrics.OutcomeCompleted
		case store.OutcomeRetry:
			outcome = metrics.OutcomeRetried
		case store.OutcomeFailed:
			outcome = metrics.OutcomeFailed
		case store.OutcomeRelease:
			outcome = metrics.OutcomeHandedBack
		}
	}
	e.a.series.Ended(outcome, metrics.ErrorClassOf(e.message), now.Sub(e.a.started))
}

// logOutcome logs the attempt, if its level is enabled.
func (w *Worker) logOutcome(e ending, ok bool, werr error) {
	level, msg := slog.LevelInfo, "job attempt done"
	switch {
	case werr != nil:
		// The lease will expire and the rescuer will count the attempt.
		level, msg = slog.LevelError, "write outcome failed"
	case !ok:
		level, msg = slog.LevelWarn, "outcome dropped: lease no longer held (cancelled or rescued)"
	}
	if w.log.Enabled(context.Background(), level) {
		writeOutcomeLine(w.log, level, msg, e, werr)
	}
}

// writeOutcomeLine is apart from logOutcome so that its attributes are put
// together, and its stack frame grown, only for a line that is written: at
// thousands of jobs a second, doing so for nothing shows in profiles.
func writeOutcomeLine(log *slog.Logger, level slog.Level, msg string, e ending, werr error) {
	c := e.a.claim
	attrs := []slog.Attr{slog.Any("job_id", c.ID), slog.String("type", string(c.Type)), slog.Int("attempt", c.Attempts),
		slog.String("outcome", string(e.o.Kind)), slog.Int64("duration_ms", time.Since(e.a.started).Milliseconds())}
	if tid := tracing.SpanTraceID(e.a.span); tid != "" {
		attrs = append(attrs, slog.String("trace_id", tid))
	}
	if e.err != nil {
		attrs = append(attrs, slog.String("err", e.err.Error()))
	}
	if werr != nil {
		attrs = append(attrs, slog.Any("write_err", werr))
	}
	log.LogAttrs(context.Background(), level, msg, attrs...)
}
