package worker

import (
	"context"
	"log/slog"
	"time"

	"github.com/jobsd/jobsd/store"
)

// maxBatch bounds one completing statement.
const maxBatch = 500

// completion is one finished attempt waiting to be written; written
// receives whether its lease still held (and the write error, if any).
type completion struct {
	store.Completion
	written chan completionResult
}

type completionResult struct {
	ok  bool
	err error
}

// completer writes successful outcomes in batches: whatever has queued up
// while the previous statement ran goes in the next one. Under light load a
// batch is one job and adds no delay; under heavy load one round trip
// completes hundreds of jobs, each still fenced on its own lease.
func (w *Worker) completer(ctx context.Context, log *slog.Logger) {
	for {
		var first completion
		select {
		case first = <-w.completions:
		case <-ctx.Done():
			return
		}
		batch := []completion{first}
	gather:
		for len(batch) < maxBatch {
			select {
			case c := <-w.completions:
				batch = append(batch, c)
			default:
				break gather
			}
		}
		w.writeCompletions(batch, log)
	}
}

func (w *Worker) writeCompletions(batch []completion, log *slog.Logger) {
	rows := make([]store.Completion, len(batch))
	for i, c := range batch {
		rows[i] = c.Completion
	}
	// Outcomes are written even during shutdown: they have their own deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done, err := w.cfg.Store.CompleteMany(ctx, rows)
	if err != nil {
		log.Warn("complete batch failed", "jobs", len(batch), "err", err)
	}
	for _, c := range batch {
		c.written <- completionResult{ok: done[c.ID], err: err}
	}
}

// complete queues a successful outcome, frees the job's slot (the lease is
// still held and heartbeated) and waits until the outcome is written. A full
// queue keeps the slot: that is the back-pressure on claiming.
func (w *Worker) complete(r *running, result []byte) (bool, error) {
	req := completion{Completion: store.Completion{Claimed: r.claim, Result: result}, written: make(chan completionResult, 1)}
	w.completions <- req
	w.freeSlot(r)
	res := <-req.written
	return res.ok, res.err
}
