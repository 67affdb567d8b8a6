package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jobsd/jobsd/job"
	"github.com/lib/pq"
)

// The operator's view of jobs: any user's job, with what only operators see.

// Why a requeue is refused.
var (
	ErrNotFailed       = errors.New("only a FAILED job can be requeued")
	ErrCancelledJob    = errors.New("a cancelled job is never requeued")
	ErrAlreadyRequeued = errors.New("job was already requeued")
)

// operatorSelect reads a job with the operator's fields from jobs aliased
// j; operatorColumns names the same columns once selected.
const (
	operatorSelect = `j.id, j.user_id, j.type, j.status, j.result, j.error, j.attempts, j.max_attempts,
	j.created_at, j.started_at, j.completed_at, j.updated_at, j.version,
	j.worker_id, j.cancelled_by, j.requeued_from,
	(SELECT r.id FROM jobs r WHERE r.requeued_from = j.id) AS requeued_as`
	operatorColumns = jobColumns + `, worker_id, cancelled_by, requeued_from, requeued_as`
)

func scanOperatorJob(rows *sql.Rows, j *job.Job, extra ...any) error {
	return scanJob(rows, j, append([]any{&j.WorkerID, &j.CancelledBy, &j.RequeuedFrom, &j.RequeuedAs}, extra...)...)
}

// jobsByID reads the jobs with these ids with the operator's fields, in the
// order given; unknown ids are left out.
func (s *Store) jobsByID(ctx context.Context, ids []uuid.UUID) ([]job.Job, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, `SELECT `+operatorSelect+`
		FROM unnest($1::uuid[]) WITH ORDINALITY AS want(id, n) JOIN jobs j ON j.id = want.id
		ORDER BY want.n`, pq.Array(uuidStrings(ids)))
	if err != nil {
		return nil, fmt.Errorf("read jobs: %w", classify(err))
	}
	defer rows.Close()
	out := []job.Job{}
	for rows.Next() {
		var j job.Job
		if err := scanOperatorJob(rows, &j); err != nil {
			return nil, fmt.Errorf("read jobs: %w", classify(err))
		}
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read jobs: %w", classify(err))
	}
	return out, nil
}

func uuidStrings(ids []uuid.UUID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}

// clockSlack bounds how far the API host's clock (which times a job's id)
// and the database's (which sets created_at) may differ: a creation-time
// filter reads ids within this much of its bound and checks created_at.
const clockSlack = time.Minute

// queryOperatorPage runs the statement of an operator's list page: every
// user's jobs (or f.UserID's), newest first by id.
func (s *Store) queryOperatorPage(ctx context.Context, f ListFilter, status, typ any) (*sql.Rows, error) {
	var user, after, fromT, fromID, toT, toID any
	if f.UserID != "" {
		user = f.UserID
	}
	if f.After != nil {
		after = f.After.ID
	}
	if t := f.CreatedAfter; t != nil {
		fromT, fromID = *t, FirstIDAt(t.Add(-clockSlack))
	}
	if t := f.CreatedBefore; t != nil {
		toT, toID = *t, FirstIDAt(t.Add(clockSlack))
	}
	where := `($3::text IS NULL OR j.user_id = $3)
		AND ($4::text IS NULL OR j.status = $4)
		AND ($5::text IS NULL OR j.type = $5)
		AND ($6::uuid IS NULL OR j.id < $6)
		AND ($7::timestamptz IS NULL OR (j.id >= $8::uuid AND j.created_at >= $7))
		AND ($9::timestamptz IS NULL OR (j.id < $10::uuid AND j.created_at < $9))`
	return s.db.QueryContext(ctx, pageSQL(operatorSelect, operatorColumns, where, "id DESC"),
		f.Limit, s.listMaxBytes, user, status, typ, after, fromT, fromID, toT, toID)
}

// AttemptOutcome is how an entry of a job's attempt log ended.
type AttemptOutcome string

// The outcomes in the attempt log; AttemptRunning is the attempt under way,
// which has no row yet.
const (
	AttemptRunning   AttemptOutcome = "running"
	AttemptCompleted AttemptOutcome = "completed"
	AttemptRetried   AttemptOutcome = "retried"
	AttemptFailed    AttemptOutcome = "failed"
	AttemptLost      AttemptOutcome = "lost"
	AttemptCancelled AttemptOutcome = "cancelled"
)

// Attempt is one entry of a job's attempt log.
type Attempt struct {
	Attempt   int
	WorkerID  *string
	StartedAt *time.Time
	EndedAt   *time.Time // nil while running
	Outcome   AttemptOutcome
	Error     *string
}

// Attempts returns the job's attempt log, oldest first, with the attempt
// under way (if any) last, or ErrNotFound.
func (s *Store) Attempts(ctx context.Context, id uuid.UUID) ([]Attempt, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, `
		SELECT 0 AS src, attempt, worker_id, started_at, ended_at, outcome, error
		FROM job_attempts WHERE job_id = $1
		UNION ALL
		-- The attempt that completed the job, from the job row (migration
		-- 00014; jobs completed before it have their entry in the log).
		SELECT 0, attempts, worker_id, attempted_at, completed_at, 'completed', NULL
		FROM jobs WHERE id = $1 AND status = 'COMPLETED'
			AND NOT EXISTS (SELECT 1 FROM job_attempts WHERE job_id = $1 AND outcome = 'completed')
		UNION ALL
		SELECT 1, attempts, worker_id, attempted_at, NULL, 'running', NULL
		FROM jobs WHERE id = $1 AND lease_owner IS NOT NULL AND status = 'PROCESSING'
		UNION ALL
		SELECT 2, 0, NULL, NULL, NULL, 'exists', NULL FROM jobs WHERE id = $1
		ORDER BY 1, 5, 2`, id)
	if err != nil {
		return nil, fmt.Errorf("read attempts: %w", classify(err))
	}
	defer rows.Close()
	out := []Attempt{}
	found := false
	for rows.Next() {
		var src int
		var a Attempt
		if err := rows.Scan(&src, &a.Attempt, &a.WorkerID, &a.StartedAt, &a.EndedAt, &a.Outcome, &a.Error); err != nil {
			return nil, fmt.Errorf("read attempts: %w", classify(err))
		}
		if src == 2 {
			found = true
			continue
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read attempts: %w", classify(err))
	}
	if !found {
		return nil, ErrNotFound
	}
	return out, nil
}

// requeueable is what a FAILED job must be to be requeued: not cancelled
// (cancelled_by, or a cancellation's text from before cancelled_by existed).
const requeueable = `j.status = 'FAILED' AND j.cancelled_by IS NULL AND j.error NOT IN ('` +
	job.ErrTextCancelled + `', '` + job.ErrTextCancelledByAdmin + `')`

// Requeue creates a new PENDING job with the FAILED job's user, type and
// input, linked to it by requeued_from, and returns it. The original is not
// changed. It returns ErrNotFound, ErrNotFailed, ErrCancelledJob or
// ErrAlreadyRequeued (the unique index on requeued_from decides races).
func (s *Store) Requeue(ctx context.Context, id uuid.UUID) (*job.Job, error) {
	newID, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("new job id: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var created uuid.UUID
	err = s.db.GetContext(ctx, &created, `
		INSERT INTO jobs (id, user_id, type, input, max_attempts, requeued_from)
		SELECT $2, j.user_id, j.type, j.input, j.max_attempts, j.id FROM jobs j
		WHERE j.id = $1 AND `+requeueable+`
		ON CONFLICT (requeued_from) WHERE requeued_from IS NOT NULL DO NOTHING
		RETURNING id`, id, newID)
	if isNoRows(err) {
		return nil, s.whyNotRequeued(ctx, id)
	}
	if err != nil {
		return nil, fmt.Errorf("requeue job: %w", classify(err))
	}
	return s.Get(ctx, Operator(""), created)
}

// whyNotRequeued says why Requeue created nothing.
func (s *Store) whyNotRequeued(ctx context.Context, id uuid.UUID) error {
	j, err := s.Get(ctx, Operator(""), id)
	switch {
	case err != nil:
		return err
	case j.RequeuedAs != nil:
		return ErrAlreadyRequeued
	case j.Status != job.StatusFailed:
		return ErrNotFailed
	default:
		return ErrCancelledJob
	}
}

// RequeueFilter selects FAILED jobs to requeue.
type RequeueFilter struct {
	FailedAfter   time.Time
	FailedBefore  *time.Time
	Type          *job.Type
	UserID        string // "" for every user
	ErrorContains string // "" for any error
	Limit         int    // most jobs to requeue
	DryRun        bool
}

// RequeueMatchCap is how far RequeueFailed counts matching jobs.
const RequeueMatchCap = 10_000

// RequeueFailed requeues (as Requeue does) up to f.Limit FAILED jobs that
// ended in the time range and match the filter, oldest first, and returns
// how many match (counted up to RequeueMatchCap) and the new jobs. The
// failures are found through the attempt log's time index, not by scanning
// jobs.
func (s *Store) RequeueFailed(ctx context.Context, f RequeueFilter) (matched int, requeued []job.Job, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var before, typ, user, contains any
	if f.FailedBefore != nil {
		before = *f.FailedBefore
	}
	if f.Type != nil {
		typ = string(*f.Type)
	}
	if f.UserID != "" {
		user = f.UserID
	}
	if f.ErrorContains != "" {
		contains = f.ErrorContains
	}
	candidates := `
		SELECT j.id, row_number() OVER (ORDER BY a.ended_at, j.id) AS n
		FROM job_attempts a JOIN jobs j ON j.id = a.job_id
		WHERE a.final AND a.outcome IN ('failed', 'lost')
		  AND a.ended_at >= $1 AND ($2::timestamptz IS NULL OR a.ended_at < $2)
		  AND ($3::text IS NULL OR j.type = $3)
		  AND ($4::text IS NULL OR j.user_id = $4)
		  AND ($5::text IS NULL OR strpos(j.error, $5) > 0)
		  AND ` + requeueable + `
		  AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.requeued_from = j.id)
		ORDER BY a.ended_at, j.id
		LIMIT ` + fmt.Sprint(RequeueMatchCap)
	args := []any{f.FailedAfter, before, typ, user, contains}
	if f.DryRun {
		err = s.db.GetContext(ctx, &matched, `SELECT count(*) FROM (`+candidates+`) c`, args...)
		if err != nil {
			return 0, nil, fmt.Errorf("count failed jobs: %w", classify(err))
		}
		return matched, []job.Job{}, nil
	}
	ids := make([]string, f.Limit)
	for i := range ids {
		id, err := uuid.NewV7()
		if err != nil {
			return 0, nil, fmt.Errorf("new job id: %w", err)
		}
		ids[i] = id.String()
	}
	var rows []struct {
		ID      *uuid.UUID `db:"id"`
		Matched int        `db:"matched"`
	}
	err = s.db.SelectContext(ctx, &rows, `
		WITH c AS MATERIALIZED (`+candidates+`),
		made AS (
			INSERT INTO jobs (id, user_id, type, input, max_attempts, requeued_from)
			SELECT u.id, j.user_id, j.type, j.input, j.max_attempts, j.id
			FROM c JOIN unnest($6::uuid[]) WITH ORDINALITY AS u(id, n) ON u.n = c.n
			JOIN jobs j ON j.id = c.id
			ON CONFLICT (requeued_from) WHERE requeued_from IS NOT NULL DO NOTHING
			RETURNING id)
		SELECT made.id, (SELECT count(*) FROM c) AS matched FROM made
		UNION ALL SELECT NULL, (SELECT count(*) FROM c)`, append(args, pq.Array(ids))...)
	if err != nil {
		return 0, nil, fmt.Errorf("requeue failed jobs: %w", classify(err))
	}
	var made []uuid.UUID
	for _, r := range rows {
		matched = r.Matched
		if r.ID != nil {
			made = append(made, *r.ID)
		}
	}
	requeued, err = s.jobsByID(ctx, made)
	if err != nil {
		return 0, nil, err
	}
	return matched, requeued, nil
}

// TypeStatusCount is a count of jobs of one type and status.
type TypeStatusCount struct {
	Type   job.Type
	Status job.Status
	Count  int64
}

// MinuteCount is how many jobs ended in one minute.
type MinuteCount struct {
	Minute            time.Time
	Completed, Failed int64
}

// Activity is what the attempt log says of the last hour.
type Activity struct {
	FinishedLastHour []TypeStatusCount // by type and final status
	PerMinute        []MinuteCount     // 60 minutes, oldest first, the current one last
}

// RecentActivity counts the jobs that ended in the last hour, by type and
// status and per minute: the failures from an hour of the attempt log
// (through its time index), the completions from job_completions' counts
// (and from the log for jobs completed before migration 00014), never the
// finished jobs themselves. Completions count in the hour by their minute.
func (s *Store) RecentActivity(ctx context.Context) (Activity, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, `
		SELECT date_trunc('minute', now()) AS now_minute, minute, type, completed, in_hour, sum(n)::bigint
		FROM (
			SELECT date_trunc('minute', ended_at) AS minute, type, outcome = 'completed' AS completed,
				ended_at >= now() - interval '1 hour' AS in_hour, 1 AS n
			FROM job_attempts
			WHERE final AND ended_at >= date_trunc('minute', now()) - interval '59 minutes'
			UNION ALL
			SELECT minute, type, true, true, n FROM job_completions
			WHERE minute >= date_trunc('minute', now()) - interval '59 minutes'
		) ended
		GROUP BY 2, 3, 4, 5`)
	if err != nil {
		return Activity{}, fmt.Errorf("recent activity: %w", classify(err))
	}
	defer rows.Close()
	byType := map[TypeStatusCount]int64{}
	byMinute := map[time.Time]*MinuteCount{}
	var nowMinute time.Time
	for rows.Next() {
		var minute time.Time
		var typ job.Type
		var completed, inHour bool
		var n int64
		if err := rows.Scan(&nowMinute, &minute, &typ, &completed, &inHour, &n); err != nil {
			return Activity{}, fmt.Errorf("recent activity: %w", classify(err))
		}
		m := byMinute[minute.UTC()]
		if m == nil {
			m = &MinuteCount{Minute: minute.UTC()}
			byMinute[minute.UTC()] = m
		}
		key := TypeStatusCount{Type: typ, Status: job.StatusFailed}
		if completed {
			m.Completed += n
			key.Status = job.StatusCompleted
		} else {
			m.Failed += n
		}
		if inHour {
			byType[key] += n
		}
	}
	if err := rows.Err(); err != nil {
		return Activity{}, fmt.Errorf("recent activity: %w", classify(err))
	}
	if nowMinute.IsZero() {
		if err := s.db.GetContext(ctx, &nowMinute, `SELECT date_trunc('minute', now())`); err != nil {
			return Activity{}, fmt.Errorf("recent activity: %w", classify(err))
		}
	}
	var a Activity
	for i := 59; i >= 0; i-- {
		minute := nowMinute.UTC().Add(-time.Duration(i) * time.Minute)
		if m := byMinute[minute]; m != nil {
			a.PerMinute = append(a.PerMinute, *m)
		} else {
			a.PerMinute = append(a.PerMinute, MinuteCount{Minute: minute})
		}
	}
	for _, t := range job.Types {
		for _, st := range []job.Status{job.StatusCompleted, job.StatusFailed} {
			if n := byType[TypeStatusCount{Type: t, Status: st}]; n > 0 {
				a.FinishedLastHour = append(a.FinishedLastHour, TypeStatusCount{Type: t, Status: st, Count: n})
			}
		}
	}
	return a, nil
}
