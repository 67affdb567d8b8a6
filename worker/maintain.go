package worker

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/jobsd/jobsd/store"
)

// Background upkeep: heartbeats that extend held leases (and refresh the
// registry entry), the rescue of expired leases, retention, and the retry
// backoff that rescue shares with failed attempts.

// maintain extends held leases and rescues expired ones until ctx ends.
func (w *Worker) maintain(ctx context.Context, log *slog.Logger) {
	hb := time.NewTicker(w.cfg.Heartbeat)
	defer hb.Stop()
	rescue := time.NewTicker(w.cfg.RescueEvery)
	defer rescue.Stop()
	retention := time.NewTicker(w.cfg.RetentionEvery)
	defer retention.Stop()
	w.register(ctx, log)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hb.C:
			w.heartbeat(ctx, log)
			w.register(ctx, log)
		case <-retention.C:
			w.deleteExpired(ctx, log)
			if err := w.cfg.Store.PruneCompletions(ctx); err != nil && ctx.Err() == nil {
				log.Warn("pruning completion counts failed", "err", err)
			}
		case <-rescue.C:
			retried, failed, err := w.cfg.Store.Rescue(ctx, w.backoff(1))
			if err != nil && ctx.Err() == nil {
				log.Warn("rescue failed", "err", err)
			} else if retried+failed > 0 {
				log.Warn("rescued jobs of lost workers", "retried", retried, "failed", failed)
				w.cfg.Metrics.Rescued(retried, failed)
			}
		}
	}
}

// retentionBatch is how many finished jobs one statement deletes, and
// retentionBatches how many statements one round may run: small
// transactions that hold few row locks, and a bounded round.
const (
	retentionBatch   = 1000
	retentionBatches = 100
)

// deleteExpired deletes finished jobs older than Retention, batch by batch
// while batches come back full. Only one process of the deployment deletes
// at a time (the store's advisory lock); the others find nothing to do.
func (w *Worker) deleteExpired(ctx context.Context, log *slog.Logger) {
	if w.cfg.Retention <= 0 {
		return
	}
	total := 0
	for range retentionBatches {
		n, err := w.cfg.Store.DeleteFinished(ctx, time.Now().Add(-w.cfg.Retention), retentionBatch)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("deleting expired jobs failed", "err", err)
			}
			break
		}
		total += n
		if n < retentionBatch {
			break
		}
	}
	if total > 0 {
		log.Info("deleted finished jobs past their retention", "jobs", total, "retention", w.cfg.Retention.String())
	}
}

// heartbeat extends the leases of the claims this worker's attempts belong
// to, deletes those of claims whose attempts have all ended, and stops the
// handlers of attempts whose job no longer carries their lease.
func (w *Worker) heartbeat(ctx context.Context, log *slog.Logger) {
	w.mu.Lock()
	held := make([]store.Claimed, 0, len(w.inflight))
	for _, a := range w.inflight {
		held = append(held, a.claim)
	}
	released := w.released
	w.released = nil
	w.mu.Unlock()
	lost, err := w.cfg.Store.Heartbeat(ctx, held, released, w.cfg.Lease)
	if err != nil {
		w.mu.Lock()
		w.released = append(w.released, released...) // the next heartbeat tries again
		w.mu.Unlock()
		if ctx.Err() == nil {
			log.Warn("heartbeat failed", "err", err)
		}
		return
	}
	for _, id := range lost {
		log.Info("lease lost; stopping the handler", "job_id", id)
		w.cancelJob(id)
	}
}

// heartbeats extends held leases every Heartbeat until ctx ends; unlike
// maintain, it leaves rescue and retention to the deployment's schedule.
func (w *Worker) heartbeats(ctx context.Context, log *slog.Logger) {
	t := time.NewTicker(w.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.heartbeat(ctx, log)
		}
	}
}

// backoff is the delay before attempt+1: BackoffBase doubled per attempt,
// capped, with full jitter in its upper half so retries spread out.
func (w *Worker) backoff(attempt int) time.Duration {
	d := w.cfg.BackoffBase << min(attempt-1, 20)
	if d > w.cfg.BackoffMax || d <= 0 {
		d = w.cfg.BackoffMax
	}
	return d/2 + rand.N(d/2+1)
}

// releaseClaims deletes, when a run ends, the leases of the claims whose
// attempts have all ended since the last heartbeat. A lease left behind
// (this write failed, the process died) expires, and the rescuer deletes it
// without touching a job that no longer carries it.
func (w *Worker) releaseClaims(log *slog.Logger) {
	w.mu.Lock()
	released := w.released
	w.released = nil
	w.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := w.cfg.Store.Heartbeat(ctx, nil, released, w.cfg.Lease); err != nil {
		log.Warn("deleting the leases of ended claims failed; they will expire", "claims", len(released), "err", err)
	}
}
