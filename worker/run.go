package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/jobsd/jobsd/store"
)

// task is a claimed job waiting for a runner.
type task struct {
	ctx  context.Context
	r    *running
	jobs *sync.WaitGroup // Done once the job's outcome is written
	log  *slog.Logger
}

// runner runs handlers one after another. Runners live as long as the
// worker, so a stack a handler grew mostly serves the next one: with a
// goroutine per job, stack growth was 28% of the worker's CPU at a backlog,
// with runners 14% (the GC still shrinks the stacks of idle runners).
func (w *Worker) runner(tasks <-chan task) {
	for t := range tasks {
		w.runJob(t)
	}
}

// runJob runs one attempt, then hands its outcome to its batch if that has
// not settled yet, or else to a goroutine of its own that writes it; either
// way the runner can take the next job at once.
func (w *Worker) runJob(t task) {
	r := t.r
	w.mu.Lock()
	c := r.claim // settle gives it a lease under w.mu
	w.mu.Unlock()
	start := time.Now()
	result, err := w.call(t.ctx, c)
	if err != nil && errors.Is(t.ctx.Err(), context.DeadlineExceeded) && !errors.Is(err, context.DeadlineExceeded) {
		// The attempt's deadline (JobTimeout) passed. Handlers and model
		// providers turn it into errors of their own; tell the classifier
		// what happened, so the job says "Job attempt timed out".
		err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	w.mu.Lock()
	handedBack := r.handedBack
	w.mu.Unlock()
	o := w.decide(c, result, err)
	log := t.log
	if err != nil {
		log = log.With("err", err.Error(), "retryable", o.Kind == store.OutcomeRetry)
	}
	if b := r.batch; b != nil && !handedBack && b.offer(offer{r: r, o: o, start: start, log: log, jobs: t.jobs}) {
		w.freeSlot(r) // the batch's settling writes the outcome and finishes the job
		return
	}
	go w.finish(t, o, handedBack, start, log)
}

// finish writes the outcome of an attempt that holds (or, in a batch still
// settling, is about to hold) a lease. Every write is fenced on that lease: a
// false "ok" means someone else owns the job now (the rescuer, a
// cancellation), and the outcome is dropped.
func (w *Worker) finish(t task, o store.Outcome, handedBack bool, start time.Time, log *slog.Logger) {
	r := t.r
	defer t.jobs.Done()
	defer w.forget(r)
	if b := r.batch; b != nil {
		<-b.settled // the job now holds a lease (or, if that failed, nothing)
	}
	ok, werr := w.write(r, o, handedBack)
	outcome := string(o.Kind)
	if handedBack {
		outcome = "handed back"
	}
	w.logOutcome(log, r.claim, outcome, ok, werr, start)
}

// forget drops a job whose outcome is written (or given up on): its
// context, its place in inflight, its slot.
func (w *Worker) forget(r *running) {
	r.cancel()
	w.mu.Lock()
	delete(w.inflight, r.claim.ID)
	w.mu.Unlock()
	w.freeSlot(r)
}

// decide turns an attempt's result or error into its outcome. (A job
// handed back at shutdown is released instead, whatever its outcome: see
// write.)
func (w *Worker) decide(c store.Claimed, result []byte, err error) store.Outcome {
	o := store.Outcome{ID: c.ID}
	switch {
	case err == nil:
		o.Kind, o.Result = store.OutcomeCompleted, result
	default:
		retryable, msg := w.cfg.Classify(err)
		if retryable && c.Attempts < c.MaxAttempts {
			o.Kind, o.Backoff = store.OutcomeRetry, w.backoff(c.Attempts)
		} else {
			o.Kind, o.Error = store.OutcomeFailed, msg
		}
	}
	return o
}

// write writes a leased job's outcome, fenced on its lease.
func (w *Worker) write(r *running, o store.Outcome, handedBack bool) (bool, error) {
	c := r.claim
	// Written even when the job's context was cancelled: it has its own deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	switch {
	case handedBack:
		return w.cfg.Store.Release(ctx, c)
	case o.Kind == store.OutcomeCompleted:
		return w.complete(r, o.Result)
	case o.Kind == store.OutcomeRetry:
		ok, err := w.cfg.Store.Retry(ctx, c, o.Backoff)
		if ok {
			// Nothing notifies when a backoff ends: look again then, rather
			// than at the next fallback poll.
			time.AfterFunc(o.Backoff, w.poke)
		}
		return ok, err
	default:
		return w.cfg.Store.Fail(ctx, c, o.Error)
	}
}

// logOutcome logs the attempt, if its level is enabled.
func (w *Worker) logOutcome(log *slog.Logger, c store.Claimed, outcome string, ok bool, werr error, start time.Time) {
	level, msg := slog.LevelInfo, "job attempt done"
	switch {
	case werr != nil:
		// The lease will expire (or was never written) and the job will be
		// claimed again.
		level, msg = slog.LevelError, "write outcome failed"
	case !ok:
		level, msg = slog.LevelWarn, "outcome dropped: lease no longer held (cancelled or rescued)"
	}
	if log.Enabled(context.Background(), level) {
		writeOutcomeLine(log, level, msg, c, outcome, werr, start)
	}
}

// writeOutcomeLine is apart from logOutcome so that its attributes are put
// together, and its stack frame grown, only for a line that is written: at
// thousands of jobs a second, doing so for nothing shows in profiles.
func writeOutcomeLine(log *slog.Logger, level slog.Level, msg string, c store.Claimed, outcome string, werr error, start time.Time) {
	attrs := []slog.Attr{slog.Any("job_id", c.ID), slog.String("type", string(c.Type)), slog.Int("attempt", c.Attempts),
		slog.String("outcome", outcome), slog.Int64("duration_ms", time.Since(start).Milliseconds())}
	if werr != nil {
		attrs = append(attrs, slog.Any("write_err", werr))
	}
	log.LogAttrs(context.Background(), level, msg, attrs...)
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
	result, err = h(ctx, Job{
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
