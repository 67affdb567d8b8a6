package main

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lib/pq"
)

// The SQL-only ceiling: the claim and outcome statements of a schema
// candidate in a loop, with no handlers and no worker around them, through
// the worker's own driver (lib/pq). It bounds what any worker built on that
// schema can do on this machine, so a design is judged before it is tuned.

// CeilingRun is one candidate at one number of loops.
type CeilingRun struct {
	Server     string  `json:"server"` // "durable" or "non-durable"
	Candidate  string  `json:"candidate"`
	Loops      int     `json:"loops"`
	Jobs       int     `json:"jobs"`
	JobsPerSec float64 `json:"jobsPerSec"`
	HOTShare   float64 `json:"hotUpdateShare"` // of the jobs table's updates
	// Work is per job; the "worker" is the loops, in the bench process.
	Work *Work `json:"work,omitempty"`
}

// ceilingCandidate is a schema and its two statements. claim takes ($1 n,
// $2 worker) and returns (id, lease); finish takes ($1 ids, $2 leases) and
// completes them, fenced on the lease.
type ceilingCandidate struct {
	name string
	ddl  []string // run after jobsd's migrations
	// combined: finish is a CTE prefix taking ($3 ids, $4 leases) that
	// runs in the same statement as the next claim (one round trip).
	combined bool
	seed     []string // run after the jobs are inserted
	claim    string
	finish   string
}

const oneTableClaim = `WITH picked AS MATERIALIZED (SELECT id FROM jobs
				WHERE status IN ('PENDING', 'PROCESSING') AND lease_owner IS NULL AND run_after <= now()
				ORDER BY run_after, id LIMIT $1 FOR UPDATE SKIP LOCKED)
			UPDATE jobs j SET status = 'PROCESSING', attempts = j.attempts + 1, started_at = COALESCE(j.started_at, now()),
				lease_owner = gen_random_uuid(), lease_expires_at = now() + interval '30 seconds', worker_id = $2,
				updated_at = now(), version = j.version + 1
			FROM picked WHERE j.id = picked.id
			RETURNING j.id, j.lease_owner, j.input, j.user_id, j.type, j.attempts, j.max_attempts, j.created_at`

const oneTableFinish = `UPDATE jobs j SET status = 'COMPLETED', result = '{"output":"done"}', completed_at = now(),
				lease_owner = NULL, lease_expires_at = NULL, updated_at = now(), version = j.version + 1
			FROM unnest($1::uuid[], $2::uuid[]) AS o(id, lease)
			WHERE j.id = o.id AND j.lease_owner = o.lease AND j.status = 'PROCESSING'`

var ceilingCandidates = []ceilingCandidate{
	{name: "one table, jobs_changed trigger off (diagnostic)", ddl: []string{`ALTER TABLE jobs DISABLE TRIGGER jobs_changed`},
		claim: oneTableClaim, finish: oneTableFinish},
	{
		name:     "one table, outcomes and next claim in one statement",
		combined: true,
		claim: `WITH fin AS (UPDATE jobs j SET status = 'COMPLETED', result = '{"output":"done"}', completed_at = now(),
				lease_owner = NULL, lease_expires_at = NULL, updated_at = now(), version = j.version + 1
			FROM unnest($3::uuid[], $4::uuid[]) AS o(id, lease)
			WHERE j.id = o.id AND j.lease_owner = o.lease AND j.status = 'PROCESSING' RETURNING j.id),
			picked AS MATERIALIZED (SELECT id FROM jobs
				WHERE status IN ('PENDING', 'PROCESSING') AND lease_owner IS NULL AND run_after <= now()
				ORDER BY run_after, id LIMIT $1 FOR UPDATE SKIP LOCKED)
			UPDATE jobs j SET status = 'PROCESSING', attempts = j.attempts + 1, started_at = COALESCE(j.started_at, now()),
				lease_owner = gen_random_uuid(), lease_expires_at = now() + interval '30 seconds', worker_id = $2,
				updated_at = now(), version = j.version + 1
			FROM picked WHERE j.id = picked.id AND (SELECT count(*) FROM fin) >= 0
			RETURNING j.id, j.lease_owner, j.input, j.user_id, j.type, j.attempts, j.max_attempts, j.created_at`,
	},
	{name: "one table (jobsd's statements)", claim: oneTableClaim, finish: oneTableFinish},
	{
		// The queue and the leases in a narrow table beside the resource row;
		// the jobs row keeps only what clients see plus the fence, none of it
		// indexed, so with room on its page every update of it is HOT.
		name: "narrow queue table + HOT jobs rows (fillfactor 50)",
		ddl: []string{
			`DROP INDEX jobs_claimable_idx`, `DROP INDEX jobs_lease_idx`,
			`ALTER TABLE jobs SET (fillfactor = 50)`,
			`CREATE TABLE job_queue (id uuid PRIMARY KEY, run_after timestamptz NOT NULL, lease_owner uuid, lease_expires_at timestamptz)`,
			`CREATE INDEX job_queue_claimable_idx ON job_queue (run_after, id) WHERE lease_owner IS NULL`,
			`CREATE INDEX job_queue_lease_idx ON job_queue (lease_expires_at) WHERE lease_owner IS NOT NULL`,
		},
		seed: []string{`INSERT INTO job_queue (id, run_after) SELECT id, run_after FROM jobs`},
		claim: `WITH picked AS MATERIALIZED (SELECT id FROM job_queue
				WHERE lease_owner IS NULL AND run_after <= now()
				ORDER BY run_after, id LIMIT $1 FOR UPDATE SKIP LOCKED),
			q AS (UPDATE job_queue q SET lease_owner = gen_random_uuid(), lease_expires_at = now() + interval '30 seconds'
				FROM picked WHERE q.id = picked.id RETURNING q.id, q.lease_owner)
			UPDATE jobs j SET status = 'PROCESSING', attempts = j.attempts + 1, started_at = COALESCE(j.started_at, now()),
				lease_owner = q.lease_owner, worker_id = $2, updated_at = now(), version = j.version + 1
			FROM q WHERE j.id = q.id
			RETURNING j.id, j.lease_owner, j.input, j.user_id, j.type, j.attempts, j.max_attempts, j.created_at`,
		finish: `WITH done AS (UPDATE jobs j SET status = 'COMPLETED', result = '{"output":"done"}', completed_at = now(),
				lease_owner = NULL, updated_at = now(), version = j.version + 1
			FROM unnest($1::uuid[], $2::uuid[]) AS o(id, lease)
			WHERE j.id = o.id AND j.lease_owner = o.lease AND j.status = 'PROCESSING' RETURNING j.id)
			DELETE FROM job_queue q USING done WHERE q.id = done.id`,
	},
}

// runCeiling measures every candidate at 1 and 2 loops on n jobs.
func runCeiling(ctx context.Context, e *env, n, repeats int) ([]CeilingRun, error) {
	var out []CeilingRun
	for rep := range repeats {
		for i, c := range ceilingCandidates {
			for _, loops := range []int{1, 2} {
				name := fmt.Sprintf("ceiling_%d_%d_%d", rep, i, loops)
				url, err := e.createDB(ctx, name, true)
				if err != nil {
					return nil, err
				}
				r, err := ceilingRun(ctx, e, url, name, c, n, loops)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", c.name, err)
				}
				logf("  rep %d %-52s x%d  %8.0f jobs/s  HOT %3.0f%%  %s", rep+1, c.name, loops, r.JobsPerSec, 100*r.HOTShare, r.Work)
				out = append(out, r)
			}
		}
	}
	return out, nil
}

func ceilingRun(ctx context.Context, e *env, url, dbName string, c ceilingCandidate, n, loops int) (CeilingRun, error) {
	r := CeilingRun{Server: e.label, Candidate: c.name, Loops: loops, Jobs: n}
	db, err := sql.Open("postgres", url)
	if err != nil {
		return r, err
	}
	defer db.Close()
	db.SetMaxOpenConns(loops + 1)
	for _, q := range c.ddl {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return r, fmt.Errorf("%s: %w", q, err)
		}
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO jobs (id, user_id, type, input)
		SELECT `+uuidV7SQL+`, 'bench', 'AI_PREVIEW', '{"prompt":"x"}' FROM generate_series(1, $1) g`, n); err != nil {
		return r, err
	}
	for _, q := range append(c.seed, "VACUUM ANALYZE") {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return r, fmt.Errorf("%s: %w", q, err)
		}
	}
	meter, err := e.startWork(ctx, dbName)
	if err != nil {
		return r, err
	}
	var done atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, loops)
	start := time.Now()
	for l := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ceilingLoop(ctx, db, c, fmt.Sprintf("loop-%d", l), &done); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return r, err
	}
	r.JobsPerSec = float64(done.Load()) / time.Since(start).Seconds()
	if err := meter.workerDone(); err != nil {
		return r, err
	}
	db.SetMaxIdleConns(0) // the loops' backends exit and report their statistics
	if r.Work, err = meter.stop(ctx); err != nil {
		return r, err
	}
	r.Work.perJob(done.Load())
	var upd, hot float64
	if err := db.QueryRowContext(ctx, `SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'jobs'`).Scan(&upd, &hot); err == nil && upd > 0 {
		r.HOTShare = hot / upd
	}
	return r, nil
}

// ceilingLoop claims 500 jobs, completes them, and again, until a claim
// finds nothing.
func ceilingLoop(ctx context.Context, db *sql.DB, c ceilingCandidate, worker string, done *atomic.Int64) error {
	var prevIDs, prevLeases []string
	for {
		args := []any{500, worker}
		if c.combined {
			args = append(args, pq.Array(prevIDs), pq.Array(prevLeases))
		}
		rows, err := db.QueryContext(ctx, c.claim, args...)
		if err != nil {
			return err
		}
		var ids, leases []string
		for rows.Next() {
			var id, lease, input, user, typ string
			var attempts, maxAttempts int
			var created time.Time
			if err := rows.Scan(&id, &lease, &input, &user, &typ, &attempts, &maxAttempts, &created); err != nil {
				rows.Close() //nolint:sqlclosecheck // closed on every path; a defer in this loop would hold each batch's rows to the end
				return err
			}
			ids, leases = append(ids, id), append(leases, lease)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if c.combined {
			done.Add(int64(len(prevIDs)))
			prevIDs, prevLeases = ids, leases
			if len(ids) == 0 {
				return nil
			}
			continue
		}
		if len(ids) == 0 {
			return nil
		}
		res, err := db.ExecContext(ctx, c.finish, pq.Array(ids), pq.Array(leases))
		if err != nil {
			return err
		}
		if got, _ := res.RowsAffected(); int(got) != len(ids) {
			return fmt.Errorf("finish wrote %d of %d", got, len(ids))
		}
		done.Add(int64(len(ids)))
	}
}
