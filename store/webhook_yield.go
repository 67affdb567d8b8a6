package store

import (
	"context"
	"fmt"
	"time"
)

// queueBacklogSQL counts the runnable queue rows, at most $1, newest
// first: backwards on the claim's index from now. A burn-down claims the
// oldest jobs first, so the rows it claimed and no vacuum has removed yet
// are at the index's other end; counting from the oldest (or with no
// order: the planner then read the heap from its start) stepped over
// every one of them, a heap fetch each: 50,048 heap fetches to count
// 1,000 jobs of a queue of 100k half claimed, against 9 buffers read
// backwards (EXPLAIN ANALYZE in TestQueueBacklogPlanIsBounded).
const queueBacklogSQL = `SELECT count(*) FROM (SELECT 1` + runnable + ` ORDER BY run_after DESC, id DESC LIMIT $1) s`

// QueueBacklog reports whether at least atLeast jobs are due and unclaimed
// (the queue's runnable rows: job_queue holds only waiting jobs, and a
// claim deletes their rows), counting no further than atLeast: an
// index-only scan of job_queue_claimable_idx, the claim's own index, that
// stops after atLeast entries however long the queue is. The delivery loop
// asks it, a few times a second at most, to hold back its own statements
// while the worker burns a backlog down (docs/webhooks.md, "Delivery").
func (s *Store) QueueBacklog(ctx context.Context, atLeast int) (bool, error) {
	if atLeast <= 0 {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var n int
	err := s.db.GetContext(ctx, &n, queueBacklogSQL, atLeast)
	if err != nil {
		return false, fmt.Errorf("count the queue's backlog: %w", classify(err))
	}
	return n >= atLeast, nil
}

// WebhookWaitAge is how long the oldest webhook work waiting for the
// delivery loop has waited: the oldest outbox row that no sender holds
// (since its jobs ended) or the oldest due delivery (since it came due);
// 0 when none waits. The outbox row is found by its primary key (rows are
// written in id order, as their jobs end), the due delivery by the
// pending index, which holds only retries, test events and replays.
func (s *Store) WebhookWaitAge(ctx context.Context) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var age float64
	err := s.db.GetContext(ctx, &age, `
		SELECT COALESCE(extract(epoch FROM now() - LEAST(
			(SELECT occurred_at FROM webhook_outbox
				WHERE claimed_until IS NULL OR claimed_until < now() ORDER BY id LIMIT 1),
			(SELECT min(next_attempt_at) FROM webhook_deliveries
				WHERE status = 'PENDING' AND next_attempt_at <= now()))), 0)::float8`)
	if err != nil {
		return 0, fmt.Errorf("age of the oldest webhook work: %w", classify(err))
	}
	return time.Duration(max(age, 0) * float64(time.Second)), nil
}
