package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// retentionLock is the advisory lock that lets one process at a time delete
// old jobs (a transaction-level lock: session locks do not mix with a pool).
const retentionLock = 0x6a6f6273_72657421 // "jobsret!"

// DeleteFinished deletes up to limit finished (COMPLETED or FAILED) jobs
// created before before, with their attempt logs, in one statement, and
// returns how many. Another
// process already deleting makes it return 0 at once (it takes
// pg_try_advisory_xact_lock); it never locks or waits on an unfinished job,
// so it never holds up a claim.
//
// The rows are found through the primary key: job ids are time-ordered
// (UUIDv7, created by the API), so the ids of jobs created before before
// sort below the smallest UUIDv7 of that millisecond. No index is added,
// since every index of jobs costs every update of a job; created_at is
// checked as well, so that a job whose id is not time-ordered (inserted by
// hand) is never deleted early, only perhaps late.
func (s *Store) DeleteFinished(ctx context.Context, before time.Time, limit int) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var n int
	err := s.db.GetContext(ctx, &n, `
		WITH lock AS MATERIALIZED (SELECT pg_try_advisory_xact_lock($4) AS got),
		doomed AS MATERIALIZED (
			SELECT id FROM jobs, lock
			WHERE lock.got AND id < $1 AND created_at < $2 AND status IN ('COMPLETED', 'FAILED')
			ORDER BY id
			LIMIT $3
			FOR UPDATE SKIP LOCKED),
		gone AS (DELETE FROM jobs j USING doomed WHERE j.id = doomed.id RETURNING j.id),
		log AS (DELETE FROM job_attempts a USING gone WHERE a.job_id = gone.id)
		SELECT count(*) FROM gone`,
		FirstIDAt(before), before, limit, int64(retentionLock))
	if err != nil {
		return 0, fmt.Errorf("delete finished jobs: %w", classify(err))
	}
	return n, nil
}

// FirstIDAt is the smallest UUIDv7 of t's millisecond: every job id the
// API created before t sorts below it.
func FirstIDAt(t time.Time) uuid.UUID {
	var id uuid.UUID
	var ms [8]byte
	binary.BigEndian.PutUint64(ms[:], uint64(t.UnixMilli()))
	copy(id[:6], ms[2:])
	id[6] = 0x70 // version 7, the rest zero
	return id
}

// PruneCompletions deletes the completion counts (job_completions) older
// than two hours: the stats read one. Every worker's maintenance runs it,
// whatever the retention of jobs.
func (s *Store) PruneCompletions(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if _, err := s.db.ExecContext(ctx, `DELETE FROM job_completions WHERE minute < now() - interval '2 hours'`); err != nil {
		return fmt.Errorf("prune completion counts: %w", classify(err))
	}
	return nil
}
