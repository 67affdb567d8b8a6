package worker

import (
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/notify"
)

// Notifications: new jobs wake the claim loop; cancellations stop their
// handlers.

// listen subscribes to new jobs and cancellations. Without a ListenURL it
// returns nil channels, which never fire: the worker then polls.
func (w *Worker) listen(log *slog.Logger) (wake <-chan struct{}, cancelled <-chan uuid.UUID, closeFn func()) {
	if w.cfg.ListenURL == "" {
		return nil, nil, func() {}
	}
	wakeC := make(chan struct{}, 1)
	cancelC := make(chan uuid.UUID, 64)
	claimAgain := func() {
		select {
		case wakeC <- struct{}{}:
		default:
		}
	}
	handle := func(channel, payload string) {
		switch channel {
		case notify.JobsInserted:
			claimAgain()
		case notify.JobsCancelled:
			if id, err := uuid.Parse(payload); err == nil {
				cancelC <- id
			}
		}
	}
	// After a reconnection, re-read everything: claim again.
	l := notify.Listen(w.cfg.ListenURL, []string{notify.JobsInserted, notify.JobsCancelled}, log, handle, claimAgain)
	return wakeC, cancelC, func() {
		if err := l.Close(); err != nil {
			log.Warn("closing the notification listener", "err", err)
		}
	}
}

// cancelJob stops the handler of a job that was cancelled or whose lease
// was lost; if it does not return within Grace, the watchdog abandons it.
func (w *Worker) cancelJob(id uuid.UUID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if a, ok := w.inflight[id]; ok {
		a.stop(time.Now().Add(w.cfg.Grace))
	}
}
