package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"
)

// Claimed is a job a worker holds: Lease identifies this attempt, and every
// later write for it is fenced on that lease.
type Claimed struct {
	ID          uuid.UUID `db:"id"`
	UserID      string    `db:"user_id"`
	Type        Type      `db:"type"`
	Input       []byte    `db:"input"`
	Attempts    int       `db:"attempts"` // including this one
	MaxAttempts int       `db:"max_attempts"`
	Lease       uuid.UUID `db:"lease_owner"`
}

// nextRunnable is the queue order shared by Claim and Pick: up to $1 runnable
// jobs (PENDING, or PROCESSING waiting for a retry, whose run_after has come),
// oldest first, skipping rows another worker holds. It matches the partial
// index jobs_claimable_idx.
const nextRunnable = runnable + queueOrder

// nextRunnableAfter is nextRunnable from a place in the queue order on:
// past ($2, $3) in (run_after, id). See QueueKey.
const nextRunnableAfter = runnable + ` AND (run_after, id) > ($2, $3)` + queueOrder

const runnable = `
	FROM jobs
	WHERE status IN ('PENDING', 'PROCESSING') AND lease_owner IS NULL AND run_after <= now()`

const queueOrder = `
	ORDER BY run_after, id
	LIMIT $1
	FOR UPDATE SKIP LOCKED`

// Client-visible error texts the queue itself writes.
const (
	ErrTextWorkerLost = "Worker lost while processing the job"
	ErrTextCancelled  = "Cancelled by user"
)

// Claim takes up to n runnable jobs (PENDING, or PROCESSING waiting for a
// retry, whose run_after has come) in one statement: each gets an attempt,
// a fresh lease until now+lease, and status PROCESSING. SKIP LOCKED lets
// many workers claim at once without waiting on each other.
func (s *Store) Claim(ctx context.Context, n int, lease time.Duration) ([]Claimed, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var out []Claimed
	// The picked ids are a materialized CTE joined on the primary key: with
	// "WHERE id IN (subquery)" the planner may hash-join against a scan of
	// the whole table, which grows with every retained job.
	err := s.db.SelectContext(ctx, &out, `
		WITH picked AS MATERIALIZED (SELECT id `+nextRunnable+`)
		UPDATE jobs j SET
			status = 'PROCESSING',
			attempts = j.attempts + 1,
			started_at = COALESCE(j.started_at, now()),
			lease_owner = gen_random_uuid(),
			lease_expires_at = now() + make_interval(secs => $2),
			updated_at = now(),
			version = j.version + 1
		FROM picked
		WHERE j.id = picked.id
		RETURNING j.id, j.user_id, j.type, j.input, j.attempts, j.max_attempts, j.lease_owner`,
		n, lease.Seconds())
	if err != nil {
		return nil, fmt.Errorf("claim jobs: %w", classify(err))
	}
	return out, nil
}

// Completion is one attempt's successful outcome, for CompleteMany.
type Completion struct {
	Claimed
	Result []byte
}

// CompleteMany ends a batch of attempts as COMPLETED in one statement and
// returns the ids it completed. Completion is fenced: an attempt whose lease
// is no longer held (the job was rescued, cancelled or handed back) is left
// out and writes nothing.
func (s *Store) CompleteMany(ctx context.Context, batch []Completion) (map[uuid.UUID]bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	ids := make([]string, len(batch))
	leases := make([]string, len(batch))
	results := make([]string, len(batch))
	for i, c := range batch {
		ids[i], leases[i], results[i] = c.ID.String(), c.Lease.String(), string(c.Result)
	}
	var done []uuid.UUID
	err := s.db.SelectContext(ctx, &done, `
		UPDATE jobs j SET
			status = 'COMPLETED', result = CAST(c.result AS jsonb), error = NULL,
			completed_at = now(), updated_at = now(), version = j.version + 1,
			lease_owner = NULL, lease_expires_at = NULL
		FROM unnest($1::uuid[], $2::uuid[], $3::text[]) AS c(id, lease, result)
		WHERE j.id = c.id AND j.lease_owner = c.lease AND j.status = 'PROCESSING'
		RETURNING j.id`, pq.Array(ids), pq.Array(leases), pq.Array(results))
	if err != nil {
		return nil, fmt.Errorf("complete jobs: %w", classify(err))
	}
	out := make(map[uuid.UUID]bool, len(done))
	for _, id := range done {
		out[id] = true
	}
	return out, nil
}

// Fail ends the attempt and the job as FAILED with a client-facing message.
func (s *Store) Fail(ctx context.Context, c Claimed, message string) (bool, error) {
	return s.finish(ctx, "fail job", `UPDATE jobs SET
			status = 'FAILED', error = $3,
			completed_at = now(), updated_at = now(), version = version + 1,
			lease_owner = NULL, lease_expires_at = NULL
		WHERE id = $1 AND lease_owner = $2 AND status = 'PROCESSING'`, c.ID, c.Lease, message)
}

// Retry ends the attempt but not the job: it stays PROCESSING for its
// clients, without a lease, claimable again at now+backoff.
func (s *Store) Retry(ctx context.Context, c Claimed, backoff time.Duration) (bool, error) {
	return s.finish(ctx, "retry job", `UPDATE jobs SET
			run_after = now() + make_interval(secs => $3),
			updated_at = now(), version = version + 1,
			lease_owner = NULL, lease_expires_at = NULL
		WHERE id = $1 AND lease_owner = $2 AND status = 'PROCESSING'`, c.ID, c.Lease, backoff.Seconds())
}

// Release hands a job back without counting the attempt (graceful
// shutdown): it stays PROCESSING, claimable at once.
func (s *Store) Release(ctx context.Context, c Claimed) (bool, error) {
	return s.finish(ctx, "release job", `UPDATE jobs SET
			attempts = attempts - 1, run_after = now(),
			updated_at = now(), version = version + 1,
			lease_owner = NULL, lease_expires_at = NULL
		WHERE id = $1 AND lease_owner = $2 AND status = 'PROCESSING'`, c.ID, c.Lease)
}

func (s *Store) finish(ctx context.Context, what, query string, args ...any) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	res, err := s.db.ExecContext(ctx, query, args...)
	if err != nil {
		return false, fmt.Errorf("%s: %w", what, classify(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("%s: %w", what, err)
	}
	return n == 1, nil
}

// Heartbeat extends the leases that are still held and returns the ids of
// those that are not (rescued or cancelled), whose handlers should stop.
//
// It never waits for a row lock: a row another statement holds (most often
// this worker's own completion, which locks its rows in another order, so
// that waiting could deadlock) is skipped, neither extended nor reported
// lost, and looked at again at the next heartbeat, well within the lease.
func (s *Store) Heartbeat(ctx context.Context, held []Claimed, lease time.Duration) (lost []uuid.UUID, err error) {
	if len(held) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	ids := make([]string, len(held))
	leases := make([]string, len(held))
	for i, c := range held {
		ids[i], leases[i] = c.ID.String(), c.Lease.String()
	}
	err = s.db.SelectContext(ctx, &lost, `
		WITH mine AS MATERIALIZED (
			SELECT j.id, COALESCE(j.lease_owner = h.lease AND j.status = 'PROCESSING', false) AS held
			FROM jobs j JOIN unnest($1::uuid[], $2::uuid[]) AS h(id, lease) ON j.id = h.id
			FOR UPDATE OF j SKIP LOCKED),
		extended AS (
			UPDATE jobs j SET lease_expires_at = now() + make_interval(secs => $3)
			FROM mine WHERE j.id = mine.id AND mine.held)
		SELECT id FROM mine WHERE NOT held`, pq.Array(ids), pq.Array(leases), lease.Seconds())
	if err != nil {
		return nil, fmt.Errorf("heartbeat: %w", classify(err))
	}
	return lost, nil
}

// Rescue returns jobs whose lease expired (their worker died) to the queue,
// counting the lost attempt: claimable after backoff, or FAILED with
// ErrTextWorkerLost when that was the last attempt. It returns how many.
func (s *Store) Rescue(ctx context.Context, backoff time.Duration) (retried, failed int, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var rows []struct {
		Status Status `db:"status"`
	}
	err = s.db.SelectContext(ctx, &rows, `
		WITH lost AS MATERIALIZED (
			SELECT id FROM jobs
			WHERE lease_owner IS NOT NULL AND lease_expires_at < now() AND status = 'PROCESSING'
			LIMIT 1000
			FOR UPDATE SKIP LOCKED)
		UPDATE jobs j SET
			status = CASE WHEN j.attempts >= j.max_attempts THEN 'FAILED' ELSE j.status END,
			error = CASE WHEN j.attempts >= j.max_attempts THEN $1 END,
			completed_at = CASE WHEN j.attempts >= j.max_attempts THEN now() END,
			run_after = now() + make_interval(secs => $2),
			updated_at = now(), version = j.version + 1,
			lease_owner = NULL, lease_expires_at = NULL
		FROM lost
		WHERE j.id = lost.id
		RETURNING j.status`, ErrTextWorkerLost, backoff.Seconds())
	if err != nil {
		return 0, 0, fmt.Errorf("rescue jobs: %w", classify(err))
	}
	for _, r := range rows {
		if r.Status == StatusFailed {
			failed++
		} else {
			retried++
		}
	}
	return retried, failed, nil
}

// CancelResult says what Cancel found.
type CancelResult int

// The outcomes of Cancel.
const (
	Cancelled       CancelResult = iota // the job is now FAILED with ErrTextCancelled
	AlreadyFinished                     // the job was COMPLETED or FAILED before
)

// Cancel ends the user's PENDING or PROCESSING job as FAILED with
// ErrTextCancelled and tells its worker (NOTIFY jobs_cancelled). A PENDING
// job keeps its null startedAt. It returns ErrNotFound for a job that does
// not exist or is another user's, and AlreadyFinished for a terminal one.
func (s *Store) Cancel(ctx context.Context, userID string, id uuid.UUID) (*Job, CancelResult, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var j Job
	err := s.db.GetContext(ctx, &j, `
		WITH c AS (
			UPDATE jobs SET
				status = 'FAILED', error = $3, result = NULL,
				completed_at = now(), updated_at = now(), version = version + 1,
				lease_owner = NULL, lease_expires_at = NULL
			WHERE id = $1 AND user_id = $2 AND status IN ('PENDING', 'PROCESSING')
			RETURNING `+jobColumns+`)
		SELECT c.* FROM c CROSS JOIN LATERAL (SELECT pg_notify('jobs_cancelled', c.id::text)) AS n`,
		id, userID, ErrTextCancelled)
	if err == nil {
		return &j, Cancelled, nil
	}
	if !isNoRows(err) {
		return nil, 0, fmt.Errorf("cancel job: %w", classify(err))
	}
	cur, err := s.Get(ctx, userID, id)
	if err != nil {
		return nil, 0, err
	}
	return cur, AlreadyFinished, nil
}
