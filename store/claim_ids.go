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
// counted, status PROCESSING, startedAt on its first attempt and the worker's
// id, all under one fresh lease until now+lease. It is the claim of a worker fed by a
// queue whose messages name jobs (SQS): a job that is not runnable (finished,
// cancelled, held by another attempt, waiting for its backoff, or gone) is
// left out, and so is one another claimer is taking at this moment (SKIP
// LOCKED). Duplicate ids claim once.
func (s *Store) ClaimIDs(ctx context.Context, worker string, ids []uuid.UUID, lease time.Duration) ([]Claimed, error) {
	return s.ClaimIDsCapped(ctx, worker, ids, lease, 0)
}

// ClaimIDsCapped is ClaimIDs under ClaimRequest.UserConcurrency's cap when
// userConcurrency is above 0: a user's named jobs are claimed, oldest first
// in the queue order, only while fewer than userConcurrency of that user's
// jobs hold a lease; the rest are left out with no attempt counted (Waiting
// then reports them as due now). It runs under the same advisory lock as
// the long-lived worker's capped claims, so that Lambda instances and
// workers never both fill a user's last slot.
func (s *Store) ClaimIDsCapped(ctx context.Context, worker string, ids []uuid.UUID, lease time.Duration, userConcurrency int) ([]Claimed, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	args := []any{pq.Array(uuidStrings(ids)), lease.Seconds(), worker}
	var out []Claimed
	var err error
	if userConcurrency > 0 {
		out, _, err = s.claimCapped(ctx, claimIDsCappedSQL, append(args, userConcurrency))
	} else {
		out, _, err = s.claimOnce(ctx, claimIDsSQL, args)
	}
	if err != nil {
		return nil, fmt.Errorf("claim jobs by id: %w", classify(err))
	}
	return out, nil
}

// claimIDsSQL claims the runnable jobs among $1. Parameters: $1 the ids,
// $2 lease seconds, $3 the worker (claimPicked's).
const claimIDsSQL = `
	WITH picked AS MATERIALIZED (
		SELECT id, run_after, ctid AS tid, 0::bigint AS place` + runnable + ` AND id = ANY($1)
		FOR UPDATE SKIP LOCKED)
	` + claimPicked

// claimIDsCappedSQL is claimIDsSQL with the user cap $4: the named jobs are
// locked first, then each user's are ranked in the queue order and only the
// first cap minus the user's leased jobs are claimed. The others stay locked
// (untouched) until the claim commits, a few milliseconds.
const claimIDsCappedSQL = `
	WITH named AS MATERIALIZED (
		SELECT id, user_id, run_after, ctid AS tid` + runnable + ` AND id = ANY($1)
		FOR UPDATE SKIP LOCKED
	),
	leased AS MATERIALIZED (` + leasedPerUser + `
	),
	picked AS MATERIALIZED (
		SELECT r.id, r.run_after, r.tid, 0::bigint AS place FROM (
			SELECT named.*, row_number() OVER (PARTITION BY user_id ORDER BY run_after, id) AS turn FROM named
		) r LEFT JOIN leased l ON l.user_id = r.user_id
		WHERE r.turn <= $4 - COALESCE(l.n, 0)
	)
	` + claimPicked

// Waiting returns, among ids, the jobs that are still to run and nobody
// holds, with how long until they may be claimed: a retry's backoff or a
// rescued job's delay, or 0 for a job due now that a claim left out (its
// user at the cap of ClaimIDsCapped, or another claimer locking it at that
// moment). A queue message for one of them is sent again rather than
// dropped: for the rest of the wait, or after a pause for a job due now.
func (s *Store) Waiting(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]time.Duration, error) {
	out := map[uuid.UUID]time.Duration{}
	if len(ids) == 0 {
		return out, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, `
		SELECT id, greatest(EXTRACT(EPOCH FROM run_after - now()), 0)::float8
		FROM job_queue
		WHERE id = ANY($1)`,
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
