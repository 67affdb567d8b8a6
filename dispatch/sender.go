package dispatch

import (
	"context"
	"log/slog"
	"time"

	"github.com/jobsd/jobsd/store"
)

// sweepBatch is how many outbox rows one transaction sends: a few SQS
// batches, so that a transaction (and the row locks it holds) stays short.
const sweepBatch = 50

// Sweep sends every outbox row there is, batch after batch, and returns
// how many it sent. It stops at the first error; what was not sent stays.
func Sweep(ctx context.Context, st *store.Store, q *Queue) (int, error) {
	total := 0
	for {
		n, err := st.SendOutbox(ctx, sweepBatch, q.SendOutbox)
		total += n
		if err != nil || n < sweepBatch {
			return total, err
		}
	}
}

// RunSender sends the outbox while ctx lasts: at once after this process's
// Create wrote a row (store.OutboxWritten), and every `every` for rows that
// other processes left (one that crashed between its insert and its send).
func RunSender(ctx context.Context, st *store.Store, q *Queue, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if n, err := sweepOnce(ctx, st, q); err != nil {
			log.Warn("sending the outbox failed; the rows stay for the next sweep", "sent", n, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-st.OutboxWritten():
		case <-t.C:
		}
	}
}

// sweepTimeout bounds one sweep of the sender.
const sweepTimeout = 30 * time.Second

// sweepOnce sweeps under a context that shutdown does not cancel, so that
// a batch already sent has its rows deleted rather than rolled back and
// sent again by the next process (harmless, but a wasted invocation).
func sweepOnce(ctx context.Context, st *store.Store, q *Queue) (int, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sweepTimeout)
	defer cancel()
	return Sweep(ctx, st, q)
}
