package worker

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/store"
)

// maxOpenBatches bounds the picked batches settling at once: each holds a
// database connection for up to LockWindow. Burning down 300k jobs, 8 did
// ~29k jobs/s against ~22k with 4 (12: no better); picks that go on from
// the last one (pickFrom) do not step over the rows the others hold.
const maxOpenBatches = 8

// batch is a picked batch: its jobs run while their rows are locked, and
// settle writes every job's line in one statement. A job that finishes
// before then offers its outcome; the others are settled as running, with a
// lease, and write their outcome later on their own.
type batch struct {
	picked *store.Picked
	jobs   []*running

	mu      sync.Mutex
	open    bool
	offers  []offer
	offered map[uuid.UUID]bool
	allIn   chan struct{} // closed when every job has offered its outcome

	settled chan struct{} // closed once settle has written, or failed to
	err     error         // settle's error; read after settled
}

func newBatch(p *store.Picked) *batch {
	return &batch{picked: p, open: true, offered: make(map[uuid.UUID]bool, len(p.Jobs)),
		allIn: make(chan struct{}), settled: make(chan struct{})}
}

// offer is a finished job handed to its batch: settle writes its outcome and
// then finishes it, so that no goroutine per job waits for the batch.
type offer struct {
	r     *running
	o     store.Outcome
	start time.Time
	log   *slog.Logger
	jobs  *sync.WaitGroup
}

// offer records a finished job's outcome if the batch has not settled yet.
func (b *batch) offer(of offer) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open {
		return false
	}
	b.offers = append(b.offers, of)
	b.offered[of.o.ID] = true
	if len(b.offered) == len(b.picked.Jobs) {
		close(b.allIn)
	}
	return true
}

// openBatch reserves a batch; false when maxOpenBatches are settling.
func (w *Worker) openBatch() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.openBatches >= maxOpenBatches {
		return false
	}
	w.openBatches++
	return true
}

// batchDone releases what openBatch reserved. After a batch settled it
// wakes the claim loop, which may have waited for room; after a pick that
// found nothing it must not, or an idle worker would pick again and again.
func (w *Worker) batchDone(settled bool) {
	w.mu.Lock()
	w.openBatches--
	w.mu.Unlock()
	if settled {
		w.poke()
	}
}

// settle waits until every job of b has finished or LockWindow has passed,
// then writes the batch: finished jobs their outcome, the others a lease.
func (w *Worker) settle(b *batch, log *slog.Logger) {
	defer w.batchDone(true)
	defer close(b.settled)
	window := time.NewTimer(w.cfg.LockWindow)
	select {
	case <-b.allIn:
	case <-window.C:
	}
	window.Stop()

	b.mu.Lock()
	b.open = false
	offers := b.offers
	outcomes := make([]store.Outcome, 0, len(b.jobs))
	for _, of := range offers {
		outcomes = append(outcomes, of.o)
	}
	var leased []*running
	w.mu.Lock()
	for _, r := range b.jobs {
		if !b.offered[r.claim.ID] {
			r.claim.Lease = uuid.New() // heartbeats include the job from now on
			leased = append(leased, r)
			outcomes = append(outcomes, store.Outcome{ID: r.claim.ID, Kind: store.OutcomeRunning, Lease: r.claim.Lease})
		}
	}
	w.mu.Unlock()
	b.mu.Unlock()

	// Written even during shutdown: the jobs already ran.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b.err = b.picked.Settle(ctx, outcomes, w.cfg.Lease)
	for _, of := range offers {
		w.finishOffered(of, b.err)
	}
	if b.err == nil {
		return
	}
	// Nothing was written: every job of the batch is claimable again. Those
	// still running hold no lease; stop them (their outcome writes, fenced
	// on a lease that was never written, would be dropped anyway).
	log.Warn("settling a batch failed; its jobs are claimable again", "jobs", len(b.jobs), "err", b.err)
	w.mu.Lock()
	for _, r := range leased {
		r.claim.Lease = uuid.Nil
		r.cancel()
	}
	w.mu.Unlock()
}

// finishOffered ends a job whose outcome its batch's settling wrote (or, with
// err, failed to write).
func (w *Worker) finishOffered(of offer, err error) {
	w.forget(of.r)
	if err == nil && of.o.Kind == store.OutcomeRetry {
		time.AfterFunc(of.o.Backoff, w.poke)
	}
	w.logOutcome(of.log, of.r.claim, string(of.o.Kind), err == nil, err, of.start)
	of.jobs.Done()
}
