package worker

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// errAbandoned is the error recorded for an attempt whose handler did not
// return by its deadline. It wraps context.DeadlineExceeded, so classifiers
// give it the timeout's client text.
var errAbandoned = fmt.Errorf("%w: the handler ignored its deadline and was abandoned", context.DeadlineExceeded)

// watchdog abandons handlers still running past their deadline. Go cannot
// stop a goroutine, so the attempt is ended without it: its outcome is
// written as a timeout (fenced on its lease, so the stuck handler can never
// write later: its runner drops whatever it returns), its slot is freed and
// a new runner takes the stuck one's place. When more than MaxStuck
// handlers are stuck, Run ends with ErrTooManyStuck for the supervisor to
// restart the process.
func (w *Worker) watchdog(ctx context.Context, log *slog.Logger) {
	every := min(w.cfg.Grace/4, time.Second)
	t := time.NewTicker(max(every, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			w.abandon(now, log)
		}
	}
}

// abandon ends every attempt whose handler still runs past its deadline
// (at now).
func (w *Worker) abandon(now time.Time, log *slog.Logger) {
	var overdue []*attempt
	var handedBack []bool // read under w.mu, which shutdown writes it under
	w.mu.Lock()
	for _, a := range w.inflight {
		if a.state == stateRunning && now.After(a.deadline) {
			a.state = stateAbandoned
			w.stuck++
			overdue = append(overdue, a)
			handedBack = append(handedBack, a.handedBack)
		}
	}
	stuck := w.stuck
	w.mu.Unlock()
	for i, a := range overdue {
		a.cancel()
		e := w.end(a, nil, errAbandoned, handedBack[i])
		log.Error("handler still running past its deadline: attempt ended without it, slot replaced",
			append([]any{"job_id", a.claim.ID, "type", string(a.claim.Type), "attempt", a.claim.Attempts,
				"outcome", string(e.o.Kind), "stuck", stuck}, traceArgs(a.span)...)...)
		go w.runner()
		w.enqueue(e)
	}
	if stuck > w.cfg.MaxStuck {
		select {
		case w.fatal <- ErrTooManyStuck:
		default:
		}
	}
}
