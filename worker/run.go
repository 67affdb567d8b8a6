package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/jobsd/jobsd/store"
)

// runJob runs one attempt and writes its outcome. Every write is fenced on
// the attempt's lease; a false "ok" means someone else owns the job now
// (the rescuer, a cancellation), and this attempt's outcome is dropped.
func (w *Worker) runJob(ctx context.Context, r *running, log *slog.Logger) {
	c := r.claim
	log = log.With("job_id", c.ID, "type", c.Type, "attempt", c.Attempts)
	defer func() {
		r.cancel()
		w.mu.Lock()
		delete(w.inflight, c.ID)
		w.mu.Unlock()
		w.poke()
	}()

	start := time.Now()
	result, err := w.call(ctx, c)
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) && !errors.Is(err, context.DeadlineExceeded) {
		// The attempt's deadline (JobTimeout) passed. Handlers and model
		// providers turn it into errors of their own; tell the classifier
		// what happened, so the job says "Job attempt timed out".
		err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	// The outcome is written even when ctx was cancelled: it has its own deadline.
	wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	w.mu.Lock()
	handedBack := r.handedBack
	w.mu.Unlock()

	var ok bool
	var werr error
	outcome := ""
	switch {
	case err == nil:
		outcome = "completed"
		ok, werr = w.complete(c, result)
	case handedBack:
		outcome = "handed back"
		ok, werr = w.cfg.Store.Release(wctx, c)
	default:
		retryable, msg := w.cfg.Classify(err)
		if retryable && c.Attempts < c.MaxAttempts {
			outcome = "retry"
			backoff := w.backoff(c.Attempts)
			if ok, werr = w.cfg.Store.Retry(wctx, c, backoff); ok {
				// Nothing notifies when a backoff ends: look again then, rather
				// than at the next fallback poll.
				time.AfterFunc(backoff, w.poke)
			}
		} else {
			outcome = "failed"
			ok, werr = w.cfg.Store.Fail(wctx, c, msg)
		}
		log = log.With("err", err.Error(), "retryable", retryable)
	}
	dur := time.Since(start).Milliseconds()
	switch {
	case werr != nil:
		// The lease will expire and the rescuer will retry the job.
		log.Error("write outcome failed", "outcome", outcome, "write_err", werr, "duration_ms", dur)
	case !ok:
		log.Warn("outcome dropped: lease no longer held (cancelled or rescued)", "outcome", outcome, "duration_ms", dur)
	default:
		log.Info("job attempt done", "outcome", outcome, "duration_ms", dur)
	}
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
