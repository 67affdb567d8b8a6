package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"
)

// ClaimIDs claims the jobs among ids that are runnable now, with Claim's
// effects and rules: in one committed statement each gets its attempt
// counted, status PROCESSING, startedAt on its first attempt, a fresh lease
// until now+lease and the worker's id. It is the claim of a worker fed by a
// queue whose messages name jobs (SQS): a job that is not runnable (finished,
// cancelled, held by another attempt, waiting for its backoff, or gone) is
// left out, and so is one another claimer is taking at this moment (SKIP
// LOCKED). Duplicate ids claim once.
func (s *Store) ClaimIDs(ctx context.Context, worker string, ids []uuid.UUID, lease time.Duration) ([]Claimed, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, `
		WITH picked AS MATERIALIZED (
			SELECT id, run_after, 0::bigint AS place`+runnable+` AND id = ANY($1)
			FOR UPDATE SKIP LOCKED)
		`+claimPicked,
		pq.Array(uuidStrings(ids)), lease.Seconds(), worker)
	if err != nil {
		return nil, fmt.Errorf("claim jobs by id: %w", classify(err))
	}
	out, _, err := scanClaimed(rows)
	if err != nil {
		return nil, fmt.Errorf("claim jobs by id: %w", classify(err))
	}
	return out, nil
}

// Waiting returns, among ids, the jobs that wait for their run_after (a
// retry's backoff, a rescued job's delay) and nobody holds, with how long
// until they may be claimed. A queue message that arrives before then is
// sent again for the rest of the wait rather than dropped.
func (s *Store) Waiting(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]time.Duration, error) {
	out := map[uuid.UUID]time.Duration{}
	if len(ids) == 0 {
		return out, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, `
		SELECT id, EXTRACT(EPOCH FROM run_after - now())::float8
		FROM jobs
		WHERE id = ANY($1) AND status IN ('PENDING', 'PROCESSING') AND lease_owner IS NULL AND run_after > now()`,
		pq.Array(uuidStrings(ids)))
	if err != nil {
		return nil, fmt.Errorf("read waiting jobs: %w", classify(err))
	}
	defer rows.Close()
	for rows.Next() {
		var id uuid.UUID
		var secs float64
		if err := rows.Scan(&id, &secs); err != nil {
			return nil, fmt.Errorf("read waiting jobs: %w", classify(err))
		}
		out[id] = time.Duration(secs * float64(time.Second))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read waiting jobs: %w", classify(err))
	}
	return out, nil
}
