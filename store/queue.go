package store

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/notify"
	"github.com/lib/pq"
)

// Claimed is one attempt a worker holds. The claim that made it is committed
// before any handler code runs: the row already reads PROCESSING with the
// attempt counted, a lease and the worker's id. Every later write for the
// attempt is fenced on Lease.
type Claimed struct {
	ID          uuid.UUID
	UserID      string
	Type        job.Type
	Input       []byte
	Attempts    int // including this one
	MaxAttempts int
	Lease       uuid.UUID // the claim's: every attempt of one claim shares it
	CreatedAt   time.Time
	// TraceContext is the W3C traceparent of the request that created the
	// job, when that request was traced and sampled; "" otherwise.
	TraceContext string
	// place is the job's place in its claim's order, for NextUserAfter.
	place int64
}

// QueueKey is a job's place in the queue order: (run_after, id).
//
// Why a worker claims on from where it stopped: a claimed job leaves a dead
// entry at the head of the queue's index until VACUUM (or a later scan that
// finds it dead) removes it, and a claim from the head steps over every one
// of them. Burning down a backlog of 1M jobs, half done, that was ~3,700
// index pages per claim of 500 (6 ms instead of 1.6 ms in EXPLAIN ANALYZE).
type QueueKey struct {
	RunAfter time.Time
	ID       uuid.UUID
}

// runnable is the queue: the rows of job_queue (jobs PENDING, or
// PROCESSING waiting for a retry; a claim takes a job's row out) whose
// run_after has come, in the order of job_queue_claimable_idx.
const runnable = `
	FROM job_queue
	WHERE run_after <= now()`

// claimPicked is every claim's write, after a CTE picked (id, run_after,
// tid, place) has chosen and locked the queue rows (tid: the row's ctid,
// which a lock does not move): the rows leave the queue, and the jobs get
// their attempt counted, status PROCESSING, startedAt on their first
// attempt, the attempt's start, the worker's id $3 and the claim's lease,
// one for the whole batch: a job_leases row holding its jobs until
// now + $2 seconds, the fence of every later write of their attempts. The
// job row's columns are not indexed, so that update is HOT. Its rows are
// what scanClaimed reads.
//
// Every statement that writes both tables locks the queue rows first (here,
// picked; Cancel through its dequeued CTE), so two of them never wait on
// each other in opposite orders; outcomes and rescues lock no queue row
// (they insert the rows of jobs that wait again).
//
// The job rows are taken only if still waiting and unleased: a queue row
// that a cancel could not see (inserted by a retry committed after the
// cancel's snapshot) is dropped here without a claim.
//
// Neither write joins: each finds its rows through "= ANY(ARRAY(...))",
// a TID scan of the queue rows and an index condition on the jobs' key
// whatever the statistics say. Joined on "id = picked.id", the planner
// hashed picked (estimated at 525 rows) against a sequential scan of
// job_queue and another of jobs, or, given the array as well, probed the
// array's 500 keys once per picked row.
const claimPicked = `,
	seed AS (SELECT gen_random_uuid() AS lease),
	dequeued AS (DELETE FROM job_queue q WHERE q.ctid = ANY(ARRAY(SELECT tid FROM picked))),
	claimed AS (UPDATE jobs j SET
		status = 'PROCESSING',
		attempts = j.attempts + 1,
		started_at = COALESCE(j.started_at, now()),
		attempted_at = now(),
		lease_owner = (SELECT lease FROM seed),
		worker_id = $3,
		updated_at = now(),
		version = j.version + 1
	WHERE j.id = ANY(ARRAY(SELECT id FROM picked))
		AND j.status IN ('PENDING', 'PROCESSING') AND j.lease_owner IS NULL
	RETURNING j.id, j.user_id, j.type, j.input, j.attempts, j.max_attempts, j.lease_owner, j.created_at, j.trace_context),
	lease_row AS (INSERT INTO job_leases (lease, worker_id, expires_at, ids)
		SELECT (SELECT lease FROM seed), $3, now() + make_interval(secs => $2), array_agg(id)
		FROM claimed HAVING count(*) > 0)
	SELECT c.id, c.user_id, c.type, c.input, c.attempts, c.max_attempts, c.lease_owner, c.created_at, p.run_after, p.place, c.trace_context
	FROM claimed c JOIN picked p ON p.id = c.id`

// ClaimRequest says what to claim.
type ClaimRequest struct {
	Worker string        // the claiming worker's id, recorded on each row
	N      int           // at most this many jobs: the worker's free slots
	Lease  time.Duration // each attempt's lease, extended by Heartbeat
	// After, when set, claims only past that place in the queue order (see
	// QueueKey), in every user's jobs; jobs before it wait for a claim
	// without After.
	After *QueueKey
	// UserAfter is where the round robin over users starts: within a turn,
	// the users after it come first (see fair.go for the order), and it
	// comes last. NextUserAfter gives the value for the next claim.
	UserAfter string
	// UserConcurrency, when above 0, caps how many of one user's jobs hold
	// a lease at once, across every worker.
	UserConcurrency int
	// Users, when above 1 (and UserConcurrency is 0), makes the claim a
	// window claim (fair.go): the next N runnable jobs in the queue order,
	// found without the walk over users, taken only when they belong to at
	// least Users users and then at most N ÷ Users from each; otherwise
	// nothing is claimed, and the caller makes a full claim. The worker
	// passes the number of users its last full claim served, and makes a
	// full claim at least every second.
	Users int
}

// Claim takes up to r.N runnable jobs in one committed statement: each gets
// its attempt counted, status PROCESSING, startedAt on its first attempt and
// the worker's id, all under one fresh lease until now+r.Lease. The slots are shared
// among users by turns (fair.go): every user's oldest job before anybody's
// second. SKIP LOCKED lets many workers claim at once without waiting on
// each other. It returns the attempts and the greatest place among them in
// the queue order.
func (s *Store) Claim(ctx context.Context, r ClaimRequest) (claimed []Claimed, _ QueueKey, err error) {
	start := spanStart()
	defer func() { spanIfWorthIt(ctx, spanClaim, "UPDATE", len(claimed), start, err) }()
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	args := []any{r.N, r.Lease.Seconds(), r.Worker, r.UserAfter}
	if r.After != nil {
		args = append(args, r.After.RunAfter, r.After.ID)
	}
	if r.UserConcurrency > 0 {
		args = append(args, r.UserConcurrency)
	}
	query := claimSQLs[b2i(r.After != nil)][b2i(r.UserConcurrency > 0)]
	claim := s.claimOnce
	switch {
	case r.UserConcurrency > 0:
		claim = s.claimCapped
	case r.Users > 1:
		query = windowClaimSQLs[b2i(r.After != nil)]
		args[3] = r.Users // in the place of UserAfter, which it does not use
	}
	out, last, err := claim(ctx, query, args)
	if err != nil {
		return nil, QueueKey{}, fmt.Errorf("claim jobs: %w", classify(err))
	}
	return out, last, nil
}

// claimOnce runs an uncapped claim: one statement, committed on its own.
func (s *Store) claimOnce(ctx context.Context, query string, args []any) ([]Claimed, QueueKey, error) {
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return nil, QueueKey{}, err
	}
	return scanClaimed(rows)
}

// claimCapped runs a capped claim under userCapLock, in a transaction of its
// own: the claim statement takes its snapshot after the lock is granted, so
// it counts every lease that capped claims before it committed.
func (s *Store) claimCapped(ctx context.Context, query string, args []any) ([]Claimed, QueueKey, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, QueueKey{}, err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, userCapLock); err != nil {
		return nil, QueueKey{}, err
	}
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, QueueKey{}, err
	}
	out, last, err := scanClaimed(rows)
	if err != nil {
		return nil, QueueKey{}, err
	}
	return out, last, tx.Commit()
}

// scanClaimed reads Claim's rows and the greatest place among them (an
// UPDATE returns its rows in no particular order). By hand: sqlx's
// reflection showed in profiles at thousands of jobs a second. Each row is
// scanned in place, its ids and type through raw bytes: a Claimed scanned
// on its own (the pointers passed to Scan escape), uuid.UUID's Scan (which
// copies its text to a string) and the reflection that a job.Type takes
// cost allocations per job.
func scanClaimed(rows *sql.Rows) ([]Claimed, QueueKey, error) {
	defer rows.Close()
	var out []Claimed
	var last QueueKey
	var id, lease, typ sql.RawBytes
	var runAfter time.Time
	var traceContext sql.NullString // NULL for untraced jobs: nothing allocated
	for rows.Next() {
		out = append(out, Claimed{})
		c := &out[len(out)-1]
		err := rows.Scan(&id, &c.UserID, &typ, &c.Input, &c.Attempts, &c.MaxAttempts, &lease, &c.CreatedAt, &runAfter, &c.place, &traceContext)
		if err == nil {
			c.ID, err = uuid.ParseBytes(id)
		}
		if err == nil {
			c.Lease, err = uuid.ParseBytes(lease)
		}
		if err != nil {
			return nil, QueueKey{}, err
		}
		c.Type = jobType(typ)
		c.TraceContext = traceContext.String
		if k := (QueueKey{RunAfter: runAfter, ID: c.ID}); len(out) == 1 || k.after(last) {
			last = k
		}
	}
	return out, last, rows.Err()
}

// jobType is b as a job.Type, without allocating for the known ones.
func jobType(b []byte) job.Type {
	for _, t := range job.Types {
		if string(t) == string(b) {
			return t
		}
	}
	return job.Type(b)
}

// after reports whether k comes after o in the queue order.
func (k QueueKey) after(o QueueKey) bool {
	if !k.RunAfter.Equal(o.RunAfter) {
		return k.RunAfter.After(o.RunAfter)
	}
	for i := range k.ID {
		if k.ID[i] != o.ID[i] {
			return k.ID[i] > o.ID[i]
		}
	}
	return false
}

// OutcomeKind is how an attempt ended.
type OutcomeKind string

// The outcomes of an attempt.
const (
	// OutcomeCompleted: COMPLETED with Result.
	OutcomeCompleted OutcomeKind = "completed"
	// OutcomeFailed: FAILED with Error.
	OutcomeFailed OutcomeKind = "failed"
	// OutcomeRetry: the attempt failed and another may help; the job stays
	// PROCESSING (error null), claimable again after Backoff.
	OutcomeRetry OutcomeKind = "retry"
	// OutcomeRelease: handed back at shutdown without counting the attempt.
	// A job handed back before any counted attempt is PENDING again, with a
	// null startedAt; a later one stays PROCESSING. Claimable at once.
	OutcomeRelease OutcomeKind = "release"
)

// Outcome is one attempt's end, for Finish.
type Outcome struct {
	ID      uuid.UUID
	Lease   uuid.UUID // the attempt's lease: the write's fence
	Kind    OutcomeKind
	Result  []byte        // OutcomeCompleted: a JSON object
	Error   string        // OutcomeFailed: the client's text; OutcomeRetry: the attempt log's
	Backoff time.Duration // OutcomeRetry
}

// Finish writes a batch of outcomes in one statement and returns the ids it
// wrote. It is the only way an attempt's outcome reaches the database, and
// it is fenced on the job row's lease: an outcome whose lease the job no
// longer carries (it was rescued, cancelled or taken over) is left out and
// writes nothing. A retry or a hand-back puts the job back in the queue. A
// retried or failed attempt gets its entry in the attempt log; a completion
// is recorded by the job row and counted in job_completions (migration
// 00014).
//
// The job rows are read by their key (the index condition "id = ANY(...)"
// on an array built at run time, which the planner cannot weigh against
// the table's statistics: given the ids as a constant, it scanned a table
// of 30,000 rows for 500 of them), then matched with their outcomes. The
// fence is one COALESCE, which is not strict and has no selectivity to
// misjudge: with statistics taken while every job was PENDING, "status =
// 'PROCESSING'" looked like one row, and the planner joined each of 500
// rows to all 500 outcomes (250,000 comparisons, 90 ms for a batch of 500
// jobs with time-ordered ids, against 7 ms then).
func (s *Store) Finish(ctx context.Context, outcomes []Outcome) (_ map[uuid.UUID]bool, err error) {
	ctx, span := startSpan(ctx, spanFinish, "UPDATE", len(outcomes))
	defer func() { endSpan(span, err) }()
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	n := len(outcomes)
	// The arrays are written as literals, each in one buffer: pq.Array's
	// strings per element, its quoting and its copies took more of the
	// worker's CPU than the rest of the write.
	size := 0
	for _, o := range outcomes {
		size += len(o.Result) + len(o.Result)/8
	}
	ids, leases := newArrayLiteral(n*37), newArrayLiteral(n*37)
	kinds, errs, backoffs := newArrayLiteral(n*12), newArrayLiteral(n*3), newArrayLiteral(n*2)
	results := newArrayLiteral(size + n*3)
	for _, o := range outcomes {
		ids.uuid(o.ID)
		leases.uuid(o.Lease)
		kinds.text(string(o.Kind))
		results.textBytes(o.Result)
		errs.text(o.Error)
		backoffs.float(o.Backoff.Seconds())
	}
	rows, err := s.query(ctx, finishSQL,
		ids.String(), leases.String(), kinds.String(), results.String(), errs.String(), backoffs.String())
	if err != nil {
		return nil, fmt.Errorf("finish attempts: %w", classify(err))
	}
	defer rows.Close()
	done := make(map[uuid.UUID]bool, n)
	for rows.Next() {
		var id uuid.UUID
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("finish attempts: %w", classify(err))
		}
		done[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("finish attempts: %w", classify(err))
	}
	return done, nil
}

// arrayLiteral is a PostgreSQL array literal being written, '{a,b}', as
// pq.Array would write it.
type arrayLiteral struct{ b []byte }

// newArrayLiteral starts a literal with room for about size bytes.
func newArrayLiteral(size int) *arrayLiteral {
	return &arrayLiteral{b: append(make([]byte, 0, size+2), '{')}
}

func (a *arrayLiteral) sep() {
	if len(a.b) > 1 {
		a.b = append(a.b, ',')
	}
}

// uuid adds u, in its canonical text form.
func (a *arrayLiteral) uuid(u uuid.UUID) {
	const digits = "0123456789abcdef"
	a.sep()
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			a.b = append(a.b, '-')
		}
		a.b = append(a.b, digits[c>>4], digits[c&0xf])
	}
}

// text and textBytes add s, quoted.
func (a *arrayLiteral) text(s string)      { a.sep(); a.b = appendArrayQuoted(a.b, s) }
func (a *arrayLiteral) textBytes(s []byte) { a.sep(); a.b = appendArrayQuoted(a.b, s) }

// float adds f.
func (a *arrayLiteral) float(f float64) { a.sep(); a.b = strconv.AppendFloat(a.b, f, 'f', -1, 64) }

// String is the finished literal.
func (a *arrayLiteral) String() string { return string(append(a.b, '}')) }

// appendArrayQuoted appends s as a quoted array element: in double quotes,
// with each double quote and backslash escaped by a backslash.
func appendArrayQuoted[T string | []byte](b []byte, s T) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

// finishSQL is Finish's statement: the job rows the fence lets through,
// then the queue rows of the jobs that wait again and the attempt log.
var finishSQL = `
	WITH done AS (UPDATE jobs j SET
		status = CASE o.kind
			WHEN 'completed' THEN 'COMPLETED'
			WHEN 'failed' THEN 'FAILED'
			WHEN 'release' THEN CASE WHEN j.attempts <= 1 THEN 'PENDING' ELSE 'PROCESSING' END
			ELSE 'PROCESSING' END,
		result = CASE WHEN o.kind = 'completed' THEN CAST(o.result AS jsonb) END,
		result_bytes = CASE WHEN o.kind = 'completed' THEN octet_length(o.result) END,
		error = CASE WHEN o.kind = 'failed' THEN o.error END,
		attempts = CASE WHEN o.kind = 'release' THEN j.attempts - 1 ELSE j.attempts END,
		started_at = CASE WHEN o.kind = 'release' AND j.attempts <= 1 THEN NULL ELSE j.started_at END,
		completed_at = CASE WHEN o.kind IN ('completed', 'failed') THEN now() END,
		run_after = CASE o.kind
			WHEN 'retry' THEN now() + make_interval(secs => o.backoff)
			WHEN 'release' THEN now()
			ELSE j.run_after END,
		lease_owner = NULL,
		updated_at = now(), version = j.version + 1
	FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::float8[]) AS o(id, lease, kind, result, error, backoff)
	WHERE j.id = ANY(ARRAY(SELECT unnest($1::uuid[]))) AND j.id = o.id
		AND COALESCE(j.lease_owner = o.lease AND j.status = 'PROCESSING', false)
	RETURNING j.id, j.user_id, j.run_after, j.type, j.attempts, j.worker_id, j.attempted_at, o.kind, o.error),
	waiting AS (
		INSERT INTO job_queue (id, user_id, run_after)
		SELECT id, user_id, run_after FROM done WHERE kind IN ('retry', 'release')),
	logged AS (
		INSERT INTO job_attempts (job_id, attempt, type, worker_id, started_at, outcome, final, error)
		SELECT id, attempts, type, worker_id, attempted_at,
			CASE kind WHEN 'retry' THEN 'retried' ELSE kind END, kind <> 'retry', NULLIF(error, '')
		FROM done WHERE kind IN ('retry', 'failed')),
	counted AS (
		INSERT INTO job_completions AS c (minute, type, worker_id, n)
		SELECT date_trunc('minute', now()), type, COALESCE(worker_id, ''), count(*)
		FROM done WHERE kind = 'completed'
		GROUP BY 2, 3
		ON CONFLICT (minute, type, worker_id) DO UPDATE SET n = c.n + EXCLUDED.n),
	` + webhookEventsCTE("done", "done.kind IN ('completed', 'failed')") + `
	SELECT id FROM done`

// Heartbeat extends the leases of the claims that held attempts belong to,
// deletes the leases in released (claims whose every attempt has ended),
// and returns the ids of the held attempts whose job no longer carries
// their lease (rescued or cancelled, or ended by an outcome written just
// now), whose handlers should stop.
func (s *Store) Heartbeat(ctx context.Context, held []Claimed, released []uuid.UUID, lease time.Duration) (lost []uuid.UUID, err error) {
	if len(held) == 0 && len(released) == 0 {
		return nil, nil
	}
	ctx, span := startSpan(ctx, spanHeartbeat, "UPDATE", len(held))
	defer func() { endSpan(span, err) }()
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	ids := make([]string, len(held))
	leases := make([]string, len(held))
	for i, c := range held {
		ids[i], leases[i] = c.ID.String(), c.Lease.String()
	}
	err = s.db.SelectContext(ctx, &lost, heartbeatSQL, pq.Array(ids), pq.Array(leases), lease.Seconds(), pq.Array(uuidStrings(released)))
	if err != nil {
		return nil, fmt.Errorf("heartbeat: %w", classify(err))
	}
	return lost, nil
}

// heartbeatSQL is Heartbeat's statement: $1 ids, $2 their leases, $3
// lease seconds, $4 the leases to delete. It writes job_leases only, one
// row per claim; each job row is read by its key (a scalar subquery per
// held attempt).
const heartbeatSQL = `
	WITH extended AS (
		UPDATE job_leases l SET expires_at = now() + make_interval(secs => $3)
		WHERE l.lease = ANY($2::uuid[])),
	released AS (
		DELETE FROM job_leases l WHERE l.lease = ANY($4::uuid[]))
	SELECT h.id FROM unnest($1::uuid[], $2::uuid[]) AS h(id, lease)
	WHERE NOT COALESCE((SELECT j.lease_owner = h.lease FROM jobs j WHERE j.id = h.id), false)`

// Rescue returns the jobs of claims whose lease expired (their worker died,
// or was cut off from the database for longer than a lease) to the queue,
// counting the lost attempt: claimable after backoff, or FAILED with
// job.ErrTextWorkerLost when that was the last attempt, and logs the attempt
// as lost. The expired leases are deleted. It returns how many jobs.
func (s *Store) Rescue(ctx context.Context, backoff time.Duration) (retried, failed int, err error) {
	start := spanStart()
	defer func() { spanIfWorthIt(ctx, spanRescue, "UPDATE", retried+failed, start, err) }()
	return s.rescue(ctx, rescueSQL, backoff)
}

// rescueCTEs are Rescue's statement up to its result: the expired claims
// (at most 100 a statement, each up to a claim's size), the jobs still under
// their leases put back (or failed), and their attempt log entries. A job
// of an expired claim that no longer carries its lease ended, or was
// cancelled, before: the fence leaves it alone. rescued holds each job's
// id, status and run_after, for what follows.
var rescueCTEs = `
	WITH expired AS MATERIALIZED (
		DELETE FROM job_leases l WHERE l.lease = ANY(ARRAY(
			SELECT lease FROM job_leases WHERE expires_at < now()
			ORDER BY expires_at LIMIT 100
			FOR UPDATE SKIP LOCKED))
		RETURNING l.lease, l.ids),
	rescued AS (UPDATE jobs j SET
		status = CASE WHEN j.attempts >= j.max_attempts THEN 'FAILED' ELSE j.status END,
		error = CASE WHEN j.attempts >= j.max_attempts THEN $1 END,
		completed_at = CASE WHEN j.attempts >= j.max_attempts THEN now() END,
		run_after = now() + make_interval(secs => $2),
		updated_at = now(), version = j.version + 1,
		lease_owner = NULL
	WHERE j.id = ANY(ARRAY(SELECT unnest(ids) FROM expired))
		AND j.lease_owner = ANY(ARRAY(SELECT lease FROM expired)) AND j.status = 'PROCESSING'
	RETURNING j.id, j.user_id, j.status, j.run_after, j.type, j.attempts, j.worker_id, j.attempted_at),
	waiting AS (
		INSERT INTO job_queue (id, user_id, run_after)
		SELECT id, user_id, run_after FROM rescued WHERE status <> 'FAILED'),
	logged AS (
		INSERT INTO job_attempts (job_id, attempt, type, worker_id, started_at, outcome, final, error)
		SELECT id, attempts, type, worker_id, attempted_at, 'lost', status = 'FAILED', $1
		FROM rescued),
	` + webhookEventsCTE("rescued", "rescued.status = 'FAILED'")

// rescueSQL is Rescue's statement.
var rescueSQL = rescueCTEs + `
	SELECT status FROM rescued`

// rescue runs a rescue statement (rescueSQL, or one that adds to it) and
// counts the jobs it retried and failed.
func (s *Store) rescue(ctx context.Context, statement string, backoff time.Duration) (retried, failed int, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var rows []struct {
		Status job.Status `db:"status"`
	}
	if err := s.db.SelectContext(ctx, &rows, statement, job.ErrTextWorkerLost, backoff.Seconds()); err != nil {
		return 0, 0, fmt.Errorf("rescue jobs: %w", classify(err))
	}
	for _, r := range rows {
		if r.Status == job.StatusFailed {
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
	Cancelled       CancelResult = iota // the job is now FAILED, cancelled
	AlreadyFinished                     // the job was COMPLETED or FAILED before
)

// Cancel ends a PENDING or PROCESSING job of the scope as FAILED, with
// job.ErrTextCancelled when its owner cancels and job.ErrTextCancelledByAdmin
// when an operator does, takes it out of the queue (its queue row first, as
// every writer of both tables does: a claim or an outcome under way finishes
// before it), records who cancelled it, logs the cancellation in the attempt
// log (as the running attempt's end, or attempt 0 when none runs) and tells
// its worker (NOTIFY jobs_cancelled). A PENDING job keeps its null
// startedAt. It returns ErrNotFound for a job that does not exist or is
// outside the scope, and AlreadyFinished with the job as it is for a
// terminal one.
func (s *Store) Cancel(ctx context.Context, sc Scope, id uuid.UUID) (_ *job.Job, _ CancelResult, err error) {
	ctx, span := startSpan(ctx, spanCancel, "UPDATE", 0)
	defer func() { endSpan(span, err) }()
	withJobID(span, id.String())
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	text := job.ErrTextCancelled
	if sc.anyOwner {
		text = job.ErrTextCancelledByAdmin
	}
	rows, err := s.db.QueryContext(ctx, `
		WITH target AS MATERIALIZED (
			SELECT id AS tid FROM jobs
			WHERE id = $1 AND ($2::text IS NULL OR user_id = $2) AND status IN ('PENDING', 'PROCESSING')),
		dequeued AS MATERIALIZED (
			DELETE FROM job_queue q USING target WHERE q.id = target.tid
			RETURNING q.id AS qid),
		c AS (
			UPDATE jobs j SET
				status = 'FAILED', error = $3, result = NULL, cancelled_by = $4,
				-- A cancel that waited for a claim committed after its own
				-- start must not end the job before it started.
				completed_at = greatest(now(), j.updated_at), updated_at = greatest(now(), j.updated_at),
				version = j.version + 1,
				lease_owner = NULL
			FROM target LEFT JOIN dequeued d ON d.qid = target.tid
			WHERE j.id = target.tid AND j.status IN ('PENDING', 'PROCESSING')
			-- A job waiting to run has a queue row; one without is under a
			-- claim, this statement having waited for any claim that held it.
			RETURNING `+jobColumns+`, d.qid IS NULL AS running, worker_id, attempted_at),
		logged AS (
			INSERT INTO job_attempts (job_id, attempt, type, worker_id, started_at, outcome, final, error)
			SELECT id, CASE WHEN running THEN attempts ELSE 0 END, type,
				CASE WHEN running THEN worker_id END, CASE WHEN running THEN attempted_at END,
				'cancelled', true, $3
			FROM c),
		`+webhookEventsCTE("c", "true")+`
		SELECT `+jobColumns+` FROM c CROSS JOIN LATERAL (SELECT pg_notify('`+notify.JobsCancelled+`', c.id::text)) AS n`,
		id, sc.ownerArg(), text, sc.actor)
	if err != nil {
		return nil, 0, fmt.Errorf("cancel job: %w", classify(err))
	}
	defer rows.Close()
	if rows.Next() {
		var j job.Job
		if err := scanJob(rows, &j); err != nil {
			return nil, 0, fmt.Errorf("cancel job: %w", classify(err))
		}
		return &j, Cancelled, nil
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("cancel job: %w", classify(err))
	}
	cur, err := s.Get(ctx, sc, id)
	if err != nil {
		return nil, 0, err
	}
	return cur, AlreadyFinished, nil
}
