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
	defer func() {
		r.cancel()
		w.mu.Lock()
		delete(w.inflight, c.ID)
		w.mu.Unlock()
		w.freeSlot(r)
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
		ok, werr = w.complete(r, result)
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
	// Attributes are put together only for a line that is written: at
	// thousands of jobs a second, building them for nothing shows.
	level, msg := slog.LevelInfo, "job attempt done"
	switch {
	case werr != nil:
		// The lease will expire and the rescuer will retry the job.
		level, msg = slog.LevelError, "write outcome failed"
	case !ok:
		level, msg = slog.LevelWarn, "outcome dropped: lease no longer held (cancelled or rescued)"
	}
	if log.Enabled(context.Background(), level) {
		attrs := []slog.Attr{slog.Any("job_id", c.ID), slog.String("type", string(c.Type)), slog.Int("attempt", c.Attempts),
			slog.String("outcome", outcome), slog.Int64("duration_ms", time.Since(start).Milliseconds())}
		if werr != nil {
			attrs = append(attrs, slog.Any("write_err", werr))
		}
		log.LogAttrs(context.Background(), level, msg, attrs...)
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
