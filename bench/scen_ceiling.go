package main

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lib/pq"

	"github.com/jobsd/jobsd/store"
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
	// store: the candidate is jobsd's own store (store.Claim and
	// store.Finish), not the claim and finish below.
	store  bool
	seed   []string // run after the jobs are inserted
	claim  string
	finish string
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

// oneTableDDL puts the previous design (one table, migration 00011) back on
// a database of the current schema: the queue's partial indexes on jobs,
// the default fillfactor, and no job_queue rows (inserts are not enqueued).
var oneTableDDL = []string{
	`ALTER TABLE jobs DISABLE TRIGGER jobs_enqueue`,
	`ALTER TABLE jobs RESET (fillfactor)`,
	`CREATE INDEX jobs_claimable_idx ON jobs (run_after, id) WHERE status IN ('PENDING', 'PROCESSING') AND lease_owner IS NULL`,
	`CREATE INDEX jobs_user_claimable_idx ON jobs (user_id, run_after, id) WHERE status IN ('PENDING', 'PROCESSING') AND lease_owner IS NULL`,
	`CREATE INDEX jobs_lease_idx ON jobs (lease_expires_at) WHERE lease_owner IS NOT NULL`,
}

var ceilingCandidates = []ceilingCandidate{
	// The chosen design, through the store the worker uses: claims of 500
	// past a cursor (as the worker makes them), then Finish.
	{name: "job_queue + HOT job rows (jobsd's store)", store: true},
	{name: "one table (the previous design's simple statements)", ddl: oneTableDDL, claim: oneTableClaim, finish: oneTableFinish},
	{
		name:     "one table, outcomes and next claim in one statement",
		ddl:      oneTableDDL,
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
	var st *store.Store
	if c.store {
		if st, err = store.Open(ctx, url, store.Options{MaxOpenConns: loops + 1}); err != nil {
			return r, err
		}
		defer st.Close()
	}
	var done atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, loops)
	start := time.Now()
	for l := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			loop := func() error { return ceilingLoop(ctx, db, c, fmt.Sprintf("loop-%d", l), &done) }
			if st != nil {
				loop = func() error { return storeLoop(ctx, st, fmt.Sprintf("loop-%d", l), &done) }
			}
			if err := loop(); err != nil {
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

// storeLoop is ceilingLoop through jobsd's store: claims of 500 past a
// cursor while they come back full (the worker's way; a claim from the
// head steps over the dead index entries the burn-down leaves), then
// Finish, until a claim from the head finds nothing.
func storeLoop(ctx context.Context, st *store.Store, worker string, done *atomic.Int64) error {
	var cursor *store.QueueKey
	for {
		got, last, err := st.Claim(ctx, store.ClaimRequest{Worker: worker, N: 500, Lease: 30 * time.Second, After: cursor})
		if err != nil {
			return err
		}
		if len(got) == 0 {
			if cursor == nil {
				return nil
			}
			cursor = nil
			continue
		}
		cursor = nil
		if len(got) == 500 {
			cursor = &last
		}
		outs := make([]store.Outcome, len(got))
		for i, c := range got {
			outs[i] = store.Outcome{ID: c.ID, Lease: c.Lease, Kind: store.OutcomeCompleted, Result: []byte(`{"output":"done"}`)}
		}
		written, err := st.Finish(ctx, outs)
		if err != nil {
			return err
		}
		if len(written) != len(got) {
			return fmt.Errorf("finish wrote %d of %d", len(written), len(got))
		}
		done.Add(int64(len(got)))
	}
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
