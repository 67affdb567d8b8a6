package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
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
// $2 worker) and returns (id, lease, input, user_id, type, attempts,
// max_attempts, created_at); finish takes ($1 ids, $2 leases), completes
// them, fenced on the lease, and its command's row count is the number of
// jobs it completed.
type ceilingCandidate struct {
	name string
	ddl  []string // run after jobsd's migrations
	// combined: finish is a CTE prefix taking ($3 ids, $4 leases) that
	// runs in the same statement as the next claim (one round trip).
	combined bool
	// cursor: the claim also takes ($3, $4), the place (run_after, id) in
	// the queue order it claims past ('-infinity' and the nil uuid: from
	// the head), and returns two more columns, trace_context and run_after.
	// The loop claims past the last job of a full claim, as the worker
	// does (storeLoop), and from the head once such a claim finds nothing.
	cursor bool
	// store: the candidate is jobsd's own store (store.Claim and
	// store.Finish), not the claim and finish below.
	store  bool
	seed   []string // run after the jobs are inserted
	claim  string
	finish string
	// checks run after the burn-down; each must return true (besides the
	// check that every job is COMPLETED).
	checks []string
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

// batchLeaseDDL is the next design's lease table (bench/README.md, "What
// is left, and the next design"): one lease per claim batch, holding its
// jobs' ids (what a rescuer of expired leases would put back).
// storeChecks hold the store's burn-down to what it must leave: no queue
// row, no claim's lease, no attempt-log entry (completions are counted, not
// logged: migration 00014), and every job counted once.
var storeChecks = []string{
	`SELECT NOT EXISTS (SELECT FROM job_queue)`,
	`SELECT NOT EXISTS (SELECT FROM job_leases)`,
	`SELECT NOT EXISTS (SELECT FROM job_attempts)`,
	`SELECT (SELECT sum(n) FROM job_completions) = (SELECT count(*) FROM jobs)`,
}

// ceilingCandidates are the designs the SQL-only ceiling compares. The
// candidates that chose this design (per-job leases with simple statements,
// batch leases with and without the completion's log row) were measured on
// migration 00012's schema; batch leases are the store's design since
// 00013, and their figures stay in results/ceiling-batch-leases-*.
var ceilingCandidates = []ceilingCandidate{
	// The chosen design, through the store the worker uses: claims of 500
	// past a cursor (as the worker makes them), then Finish.
	{name: "job_queue + job_leases + HOT job rows (jobsd's store)", store: true, checks: storeChecks},
	// The same with the jobs_changed trigger off (a diagnostic: no API
	// process hears of changes then): what the notifications cost.
	{name: "jobsd's store without the jobs_changed trigger (diagnostic)", store: true, checks: storeChecks,
		ddl: []string{`ALTER TABLE jobs DISABLE TRIGGER jobs_changed`}},
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

// ceilingOnly, when set, limits the ceiling to the candidates whose names
// contain one of its comma-separated words (the 1M runs, which take ~1
// minute per candidate, loops and repeat).
var ceilingOnly = flag.String("ceiling-candidates", "", "SQL ceiling: only the candidates whose names contain one of these comma-separated words (default all)")

// ceilingLoops is how many loops each candidate is measured with.
var ceilingLoops = flag.String("ceiling-loops", "1,2", "SQL ceiling: the numbers of loops (concurrent claim-and-finish loops) each candidate runs with, comma-separated")

func ceilingWanted(name string) bool {
	if *ceilingOnly == "" {
		return true
	}
	for _, w := range strings.Split(*ceilingOnly, ",") {
		if w = strings.TrimSpace(w); w != "" && strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// runCeiling measures every candidate (-ceiling-candidates) at each
// number of loops (-ceiling-loops: 1 and 2) on n jobs.
func runCeiling(ctx context.Context, e *env, n, repeats int) ([]CeilingRun, error) {
	var out []CeilingRun
	var loopCounts []int
	for _, w := range strings.Split(*ceilingLoops, ",") {
		l, err := strconv.Atoi(strings.TrimSpace(w))
		if err != nil || l < 1 {
			return nil, fmt.Errorf("-ceiling-loops %q: want positive numbers", *ceilingLoops)
		}
		loopCounts = append(loopCounts, l)
	}
	for rep := range repeats {
		for i, c := range ceilingCandidates {
			if !ceilingWanted(c.name) {
				continue
			}
			for _, loops := range loopCounts {
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
	// Each run starts right after a checkpoint, so that its WAL holds a
	// full-page image of each page it first changes, as a durable server's
	// does once per checkpoint interval, whatever the runs before left:
	// without it, a timed checkpoint fell inside some runs and not others
	// (the store's WAL per job went from 1,139 to 1,974 B between repeats).
	for _, q := range append(c.seed, "VACUUM ANALYZE", "CHECKPOINT") {
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
	if st != nil {
		_ = st.Close() // the store's too (read before, its HOT share read 0 in some runs and its commits half)
	}
	if r.Work, err = meter.stop(ctx); err != nil {
		return r, err
	}
	r.Work.perJob(done.Load())
	var upd, hot float64
	if err := db.QueryRowContext(ctx, `SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'jobs'`).Scan(&upd, &hot); err == nil && upd > 0 {
		r.HOTShare = hot / upd
	}
	// The burn-down completed every job, and nothing else.
	var completed, total int64
	if err := db.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE status = 'COMPLETED'), count(*) FROM jobs`).Scan(&completed, &total); err != nil {
		return r, err
	}
	if completed != int64(n) || total != int64(n) || done.Load() != int64(n) {
		return r, fmt.Errorf("audit: %d of %d jobs COMPLETED, %d counted by the loops, %d inserted", completed, total, done.Load(), n)
	}
	for _, q := range c.checks {
		var ok bool
		if err := db.QueryRowContext(ctx, q).Scan(&ok); err != nil {
			return r, fmt.Errorf("audit: %s: %w", q, err)
		}
		if !ok {
			return r, fmt.Errorf("audit failed: %s", q)
		}
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
		// The claim's lease goes as the worker lets it go: with the next
		// heartbeat, one statement for the claims that ended meanwhile
		// (here the one claim: the loop has no heartbeat period).
		if _, err := st.Heartbeat(ctx, nil, []uuid.UUID{got[0].Lease}, 30*time.Second); err != nil {
			return err
		}
	}
}

// ceilingLoop claims 500 jobs (past a cursor, for a candidate with one),
// completes them, and again, until a claim from the head finds nothing.
func ceilingLoop(ctx context.Context, db *sql.DB, c ceilingCandidate, worker string, done *atomic.Int64) error {
	var prevIDs, prevLeases []string
	var cursor *ceilingKey // c.cursor: claim past it; nil: from the head
	for {
		args := []any{500, worker}
		if c.combined {
			args = append(args, pq.Array(prevIDs), pq.Array(prevLeases))
		}
		if c.cursor {
			if cursor == nil {
				args = append(args, "-infinity", "00000000-0000-0000-0000-000000000000")
			} else {
				args = append(args, cursor.runAfter, cursor.id)
			}
		}
		rows, err := db.QueryContext(ctx, c.claim, args...)
		if err != nil {
			return err
		}
		var ids, leases []string
		var last ceilingKey
		for rows.Next() {
			var id, lease, input, user, typ string
			var attempts, maxAttempts int
			var created time.Time
			dest := []any{&id, &lease, &input, &user, &typ, &attempts, &maxAttempts, &created}
			var trace sql.NullString
			var k ceilingKey
			if c.cursor {
				dest = append(dest, &trace, &k.runAfter)
			}
			if err := rows.Scan(dest...); err != nil {
				rows.Close() //nolint:sqlclosecheck // closed on every path; a defer in this loop would hold each batch's rows to the end
				return err
			}
			ids, leases = append(ids, id), append(leases, lease)
			if k.id = id; len(ids) == 1 || k.after(last) {
				last = k
			}
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
			if cursor == nil {
				return nil
			}
			cursor = nil
			continue
		}
		cursor = nil
		if c.cursor && len(ids) == 500 {
			cursor = &last
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

// ceilingKey is a job's place in the queue order, (run_after, id), for a
// candidate's cursor.
type ceilingKey struct {
	runAfter time.Time
	id       string // lower-case hex: ordered as the uuid's bytes
}

func (k ceilingKey) after(o ceilingKey) bool {
	if !k.runAfter.Equal(o.runAfter) {
		return k.runAfter.After(o.runAfter)
	}
	return k.id > o.id
}
