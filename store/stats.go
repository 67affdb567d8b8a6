package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/jobsd/jobsd/job"
)

// QueueStatsCap bounds how many rows QueueStats reads from each of its two
// index scans (jobs waiting for a worker, jobs under a lease). Below it the
// counts are exact; at it they are lower bounds and QueueStats.Capped says
// so. 100,000 rows take tens of milliseconds to count, which a scrape every
// few seconds can afford; a backlog that large is an incident whatever its
// exact size.
const QueueStatsCap = 100_000

// QueueStats is a snapshot of the unfinished part of the queue, for metrics.
type QueueStats struct {
	// Counts holds the number of PENDING and PROCESSING jobs per type. A
	// status or type with no jobs is absent.
	Counts map[job.Status]map[job.Type]int64
	// OldestPendingAge is how long the oldest PENDING job has existed
	// (measured by the database's clock); zero when nothing is PENDING.
	OldestPendingAge time.Duration
	// Capped is true when a scan stopped at QueueStatsCap rows: the counts
	// are then lower bounds, and OldestPendingAge is the oldest among the
	// earliest-runnable QueueStatsCap jobs.
	Capped bool
	// LiveWorkers is how many worker processes the registry has seen within
	// WorkerSeenWithin.
	LiveWorkers int
}

// queueStatsSQL reads only unfinished jobs, through the queue (job_queue's
// claimable index for the rows that wait, PENDING or PROCESSING and waiting
// for a retry; the live claims in job_leases for the jobs under a lease),
// and each job row by its key. Finished jobs, the vast majority of a long-lived
// table, are not in the queue, so the cost follows the backlog, not the
// table (TestQueueStatsCost checks the plan at 1M rows). Each scan stops at
// $1 rows. The claimable scan goes in run_after order so that, when capped,
// it still sees the jobs that have waited longest.
const queueStatsSQL = `
	WITH unleased AS (
		SELECT j.status, j.type, j.created_at FROM job_queue q JOIN jobs j ON j.id = q.id
		ORDER BY q.run_after, q.id
		LIMIT $1
	), leased AS (
		SELECT j.status, j.type FROM jobs j
		WHERE j.id = ANY(ARRAY(SELECT unnest(ids) FROM job_leases))
			AND j.lease_owner = ANY(ARRAY(SELECT lease FROM job_leases))
		LIMIT $1
	)
	SELECT false AS leased, status, type, count(*) AS n,
		EXTRACT(EPOCH FROM now() - min(created_at) FILTER (WHERE status = 'PENDING'))::float8 AS oldest
	FROM unleased GROUP BY status, type
	UNION ALL
	SELECT true, status, type, count(*), NULL FROM leased GROUP BY status, type`

// QueueStats counts the PENDING and PROCESSING jobs per type and finds the
// oldest PENDING job's age, without reading finished rows (see
// QueueStatsCap for the bound). Callers cache it: metrics read it at most
// every few seconds however often they are scraped.
func (s *Store) QueueStats(ctx context.Context) (QueueStats, error) {
	return s.queueStats(ctx, QueueStatsCap)
}

func (s *Store) queueStats(ctx context.Context, limit int) (QueueStats, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, queueStatsSQL, limit)
	if err != nil {
		return QueueStats{}, fmt.Errorf("queue stats: %w", classify(err))
	}
	defer rows.Close()
	st := QueueStats{Counts: map[job.Status]map[job.Type]int64{}}
	var scanned [2]int64 // rows read by the unleased and the leased scan
	var oldest float64
	for rows.Next() {
		var (
			leased bool
			status job.Status
			typ    job.Type
			n      int64
			age    sql.NullFloat64
		)
		if err := rows.Scan(&leased, &status, &typ, &n, &age); err != nil {
			return QueueStats{}, fmt.Errorf("queue stats: %w", err)
		}
		if st.Counts[status] == nil {
			st.Counts[status] = map[job.Type]int64{}
		}
		st.Counts[status][typ] += n
		if leased {
			scanned[1] += n
		} else {
			scanned[0] += n
		}
		if age.Valid && age.Float64 > oldest {
			oldest = age.Float64
		}
	}
	if err := rows.Err(); err != nil {
		return QueueStats{}, fmt.Errorf("queue stats: %w", classify(err))
	}
	st.OldestPendingAge = time.Duration(oldest * float64(time.Second))
	st.Capped = scanned[0] >= int64(limit) || scanned[1] >= int64(limit)
	if st.LiveWorkers, err = s.countLive(ctx, KindWorker); err != nil {
		return QueueStats{}, fmt.Errorf("queue stats: count workers: %w", classify(err))
	}
	return st, nil
}
