package worker

import (
	"context"
	"log/slog"
	"time"

	"github.com/jobsd/jobsd/store"
)

// maxBatch bounds one outcome-writing statement.
const maxBatch = 500

// ending is a finished (or abandoned) attempt waiting for its outcome to be
// written.
type ending struct {
	a       *attempt
	o       store.Outcome
	err     error  // the handler's error, for the log
	message string // the client's text for err (Classify's), for the metrics
}

// enqueue hands an ending to the writer, then frees the attempt's slot:
// its lease is still held and heartbeated until the write. A full queue
// keeps the slot meanwhile: that is the back-pressure on claiming.
func (w *Worker) enqueue(e ending) {
	w.outcomes <- e
	w.freeSlot(e.a)
}

// writer writes outcomes in batches: whatever queued up while the previous
// statement ran goes in the next one. Under light load a batch is one
// attempt and adds no delay; under heavy load one round trip ends hundreds,
// each still fenced on its own lease. It returns once the queue is closed
// and drained.
func (w *Worker) writer(log *slog.Logger) {
	for first := range w.outcomes {
		batch := []ending{first}
	gather:
		for len(batch) < maxBatch {
			select {
			case e, ok := <-w.outcomes:
				if !ok {
					break gather
				}
				batch = append(batch, e)
			default:
				break gather
			}
		}
		w.write(batch, log)
	}
}

func (w *Worker) write(batch []ending, log *slog.Logger) {
	rows := make([]store.Outcome, len(batch))
	for i, e := range batch {
		rows[i] = e.o
	}
	// Written even during shutdown, with a deadline of its own.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done, err := w.cfg.Store.Finish(ctx, rows)
	if err != nil {
		log.Warn("writing outcomes failed; their leases will expire and be rescued", "attempts", len(batch), "err", err)
	}
	now := time.Now() // the batch's outcomes ended together
	for _, e := range batch {
		w.ended(e, done[e.o.ID], err, now)
	}
	w.setInFlight()
}
