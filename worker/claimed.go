package worker

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/store"
)

// Ended is what became of one attempt that RunClaimed ran.
type Ended struct {
	Claim   store.Claimed
	Outcome store.Outcome // what the attempt came to
	// Written: the outcome is in the database. False when the fence no
	// longer held (cancelled, rescued) or the write failed (WriteErr); the
	// attempt counted all the same, and the rescuer takes over.
	Written  bool
	WriteErr error
}

// RunClaimed runs attempts that the caller claimed (store.ClaimIDs, for a
// worker fed by a queue) with the worker's own machinery, as Run would:
// each handler gets JobTimeout (or less, if jobCtx ends sooner), a handler
// that ignores its deadline is abandoned by the watchdog after Grace, the
// leases are heartbeated, a lease found lost (a cancellation, seen without
// LISTEN) stops its handler, and every outcome is written fenced on its
// lease, classified as Run classifies it. It returns once every attempt has
// ended, in no particular order. A Worker runs once: RunClaimed, like Run,
// may be called only once.
func (w *Worker) RunClaimed(jobCtx context.Context, claims []store.Claimed) []Ended {
	if len(claims) == 0 {
		return nil
	}
	var mu sync.Mutex
	out := make([]Ended, 0, len(claims))
	w.onEnded = func(e ending, ok bool, werr error) {
		mu.Lock()
		out = append(out, Ended{Claim: e.a.claim, Outcome: e.o, Written: ok && werr == nil, WriteErr: werr})
		mu.Unlock()
	}

	// A runner per attempt, so none waits for another's slot: the caller
	// claimed only what it means to run at once.
	stop := w.startMachinery(jobCtx, w.heartbeats, len(claims))
	w.startAll(jobCtx, claims)
	w.pending.Wait()
	stop()
	w.releaseClaims(w.log)
	return out
}

// ClaimIDs claims, among ids, the jobs that are runnable now, under this
// worker's id and lease (store.ClaimIDs), for RunClaimed.
func (w *Worker) ClaimIDs(ctx context.Context, ids []uuid.UUID) ([]store.Claimed, error) {
	return w.cfg.Store.ClaimIDs(ctx, w.id, ids, w.cfg.Lease)
}

// Backoff is the delay before attempt+1, as the worker computes it for a
// retry: BackoffBase doubled per attempt, capped at BackoffMax, jittered.
func (w *Worker) Backoff(attempt int) time.Duration { return w.backoff(attempt) }
