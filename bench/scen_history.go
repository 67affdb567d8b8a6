package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// HistoryResult is scenario 9: is jobsd flat as history grows? The same
// burn-down, and the same status polls, on a jobs table that holds nothing
// else and on one that already holds HistoryJobs finished jobs (what the
// default JOBS_RETENTION of 30 days keeps at a few jobs a second), the two
// measured back to back in each repeat, in alternating order.
type HistoryResult struct {
	Server       string     `json:"server"`
	HistoryJobs  int        `json:"historyJobs"`
	HistorySizes TableSizes `json:"historyTableSizes"`
	Jobs         int        `json:"jobs"`
	// Polls are status polls at c=64 of PollJobs unfinished jobs over
	// PollUsers users (a database read each), seeded beside the table's
	// other rows once its burn-downs are done.
	PollJobs  int                     `json:"pollJobs"`
	PollUsers int                     `json:"pollUsers"`
	Runs      map[string][]BurnDown   `json:"runs"`  // "empty", "history"
	Polls     map[string][]LoadResult `json:"polls"` // "empty", "history"
	// BurnDownOverEmpty and PollsOverEmpty are history ÷ empty, per repeat:
	// jobs/s and polls/s.
	BurnDownOverEmpty Spread `json:"burnDownOverEmpty"`
	PollsOverEmpty    Spread `json:"pollsOverEmpty"`
	AuditFailures     int    `json:"auditFailures"`
}

type historyOpts struct {
	history     int // finished jobs seeded into the history table
	jobs        int // each burn-down's jobs
	pollJobs    int
	pollUsers   int
	pollDur     time.Duration
	repeats     int
	concurrency int
	timeout     time.Duration
	dbMaxConns  int
}

func runHistoryScenario(ctx context.Context, e *env, iss *tokenIssuer, o historyOpts) (*HistoryResult, error) {
	res := &HistoryResult{Server: e.label, HistoryJobs: o.history, Jobs: o.jobs, PollJobs: o.pollJobs, PollUsers: o.pollUsers,
		Runs: map[string][]BurnDown{}, Polls: map[string][]LoadResult{}}
	type table struct {
		name string
		url  string
		pool *pgxpool.Pool
	}
	var tables []table
	for _, name := range []string{"empty", "history"} {
		url, pool, err := e.createJobsDB(ctx, "history_"+name)
		if err != nil {
			return nil, err
		}
		defer pool.Close()
		tables = append(tables, table{name, url, pool})
	}
	t0 := time.Now()
	if err := seedHistory(ctx, tables[1].pool, o.history); err != nil {
		return nil, err
	}
	sizes, err := jobsTableSizes(ctx, tables[1].pool)
	if err != nil {
		return nil, err
	}
	res.HistorySizes = sizes
	logf("  seeded %d finished jobs over 30 days in %.1fs (heap %s, indexes %s)", o.history, time.Since(t0).Seconds(),
		mib(sizes.HeapBytes), mib(sizes.IndexesBytes))

	// settle starts every measurement from the same quiet server: no
	// maintenance owed by the other table's last run (an autovacuum of 5M
	// rows, started by the previous burn-down, ran for minutes into the
	// next one, whichever table that was), and a checkpoint just taken.
	settle := func(ctx context.Context) error {
		for _, t := range tables {
			if _, err := t.pool.Exec(ctx, "VACUUM ANALYZE jobs, job_queue"); err != nil {
				return err
			}
		}
		if err := e.waitNoAutovacuum(ctx, 5*time.Minute); err != nil {
			return err
		}
		_, err := e.admin.Exec(ctx, "CHECKPOINT")
		return err
	}

	var burns, polls []float64
	for rep := range o.repeats {
		order := []table{tables[0], tables[1]}
		if rep%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		got := map[string]BurnDown{}
		for _, t := range order {
			b, err := jobsdBurnDownBeside(ctx, e, t.pool, t.url, settle, o.jobs, 1, 1, o.concurrency, o.timeout)
			if err != nil {
				return nil, err
			}
			b.Contender = "jobsd x1, " + t.name + " table"
			if !b.AuditOK {
				res.AuditFailures++
			}
			got[t.name] = b
			res.Runs[t.name] = append(res.Runs[t.name], b)
			logf("  rep %d %-24s %8.0f jobs/s  %s  audit: %s", rep+1, b.Contender, b.JobsPerSec, b.Work, b.Audit)
		}
		if e, h := got["empty"].JobsPerSec, got["history"].JobsPerSec; e > 0 {
			burns = append(burns, h/e)
		}
		rates := map[string]float64{}
		for _, t := range order {
			r, err := historyPolls(ctx, e, iss, t.url, t.pool, settle, o, fmt.Sprintf("serve-history-%s-%d", t.name, rep))
			if err != nil {
				return nil, err
			}
			rates[t.name] = r.PerSec
			res.Polls[t.name] = append(res.Polls[t.name], r)
			logf("  rep %d polls of unfinished jobs, %s table, c=64: %.0f req/s p50 %.2fms p99 %.2fms errors %d %s",
				rep+1, t.name, r.PerSec, r.P50ms, r.P99ms, r.Errors, r.FirstError)
		}
		if rates["empty"] > 0 {
			polls = append(polls, rates["history"]/rates["empty"])
		}
	}
	res.BurnDownOverEmpty, res.PollsOverEmpty = spread(burns), spread(polls)
	return res, nil
}

// seedHistory inserts n finished jobs (90% COMPLETED, 10% FAILED) of 10,000
// hist-* users, created over the 30 days before the last hour, with
// time-ordered ids of their creation time, as the API makes them; and
// fills the table's pages as the service does: each job is inserted
// PENDING (queued by the insert), then ended by an UPDATE. (Inserted
// finished, the rows left every page a little more free space than
// jobsd's own history leaves, enough for the next burn-down's small new
// rows to scatter into old pages; jobsd's pages end fuller, so its new
// jobs go to new pages.)
func seedHistory(ctx context.Context, pool *pgxpool.Pool, n int) error {
	const batch = 500_000
	span := (30*24*time.Hour - time.Hour).Milliseconds()
	for lo := 0; lo < n; lo += batch {
		_, err := pool.Exec(ctx, `
		INSERT INTO jobs (id, user_id, type, input, created_at, run_after)
		SELECT (lpad(to_hex(m.ms), 12, '0') || '7' || lpad(to_hex(g % 4096), 3, '0')
				|| to_hex(8 + floor(random() * 4)::int) || substr(md5(random()::text), 1, 15))::uuid,
			'hist-' || (g % 10000), 'AI_PREVIEW', '{"prompt":"Summarise the market risks for maize farmers"}',
			to_timestamp(m.ms / 1000.0), to_timestamp(m.ms / 1000.0)
		FROM generate_series($1::bigint, $1 + $2 - 1) g,
			LATERAL (SELECT (extract(epoch FROM now() - interval '30 days') * 1000)::bigint + g * $4 / $3 AS ms) m`,
			lo, min(batch, n-lo), n, span)
		if err != nil {
			return fmt.Errorf("seed history: %w", err)
		}
		if _, err := pool.Exec(ctx, `TRUNCATE job_queue`); err != nil {
			return err
		}
		_, err = pool.Exec(ctx, `
		UPDATE jobs SET status = s.status, attempts = 1,
			result = CASE WHEN s.status = 'COMPLETED' THEN '{"output":"Local preview (extractive; no AI model was called): Summarise the market risks for maize farmers"}'::jsonb END,
			error = CASE WHEN s.status = 'FAILED' THEN 'Bedrock API error: ThrottlingException - Rate exceeded' END,
			started_at = created_at + interval '1 second', completed_at = created_at + interval '2 seconds',
			updated_at = created_at + interval '2 seconds'
		FROM (SELECT id, CASE WHEN random() < 0.1 THEN 'FAILED' ELSE 'COMPLETED' END AS status FROM jobs
			WHERE status = 'PENDING' AND starts_with(user_id, 'hist-')) s
		WHERE jobs.id = s.id`)
		if err != nil {
			return fmt.Errorf("seed history: end the jobs: %w", err)
		}
	}
	// Vacuumed and checkpointed as a long-lived table is: the burn-downs
	// then pay for their own rows, not for the seed's first vacuum or its
	// full-page images.
	if _, err := pool.Exec(ctx, "VACUUM ANALYZE jobs"); err != nil {
		return err
	}
	_, err := pool.Exec(ctx, "CHECKPOINT")
	return err
}

// historyPolls seeds o.pollJobs PENDING jobs of o.pollUsers poll-* users
// (not yet due, and no worker runs), then polls them at c=64 through a
// fresh API process: every poll reads the database. The next burn-down's
// reset deletes them.
func historyPolls(ctx context.Context, e *env, iss *tokenIssuer, url string, pool *pgxpool.Pool, settle func(context.Context) error,
	o historyOpts, name string) (LoadResult, error) {
	if _, err := pool.Exec(ctx, `INSERT INTO jobs (id, user_id, type, input, run_after)
		SELECT `+uuidV7SQL+`, 'poll-' || (g % $2), 'AI_PREVIEW', '{"prompt":"x"}', now() + interval '1 day'
		FROM generate_series(0, $1 - 1) g`, o.pollJobs, o.pollUsers); err != nil {
		return LoadResult{}, fmt.Errorf("seed polled jobs: %w", err)
	}
	if err := settle(ctx); err != nil {
		return LoadResult{}, err
	}
	ix, err := loadJobIndexOf(ctx, pool, "poll-", o.pollUsers)
	if err != nil {
		return LoadResult{}, err
	}
	return warmPass(ctx, e, iss, statusTarget{url: url, ix: ix}, 64, statusOpts{dur: o.pollDur, dbMaxConns: o.dbMaxConns}, name, newLeanClient)
}

func printHistory(w io.Writer, h *HistoryResult) {
	fmt.Fprintf(w, "9. history (%s server): the same burn-down of %s jobs (jobsd x1) and the same polls of %s unfinished jobs of %d users at c=64,\n",
		h.Server, human(h.Jobs), human(h.PollJobs), h.PollUsers)
	fmt.Fprintf(w, "   on an empty jobs table and on one holding %s finished jobs of 30 days (heap %s, indexes %s), back to back in each repeat\n",
		human(h.HistoryJobs), mib(h.HistorySizes.HeapBytes), mib(h.HistorySizes.IndexesBytes))
	fmt.Fprintf(w, "\ttable\tjobs/s\tPG µs/job\tworker µs/job\tWAL B/job\tpolls/s\tpoll p50 ms\tpoll p99 ms\n")
	for _, name := range []string{"empty", "history"} {
		var rate, pg, wk, wal []float64
		for _, b := range h.Runs[name] {
			rate = append(rate, b.JobsPerSec)
			if b.Work != nil {
				pg, wk, wal = append(pg, b.Work.PGCPUus), append(wk, b.Work.WorkerCPUus), append(wal, b.Work.WALBytes)
			}
		}
		p := summarizeRuns(h.Polls[name])
		fmt.Fprintf(w, "\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, sp(cleanSpread(spread(rate)), "%.0f"), sp(cleanSpread(spread(pg)), "%.1f"),
			sp(cleanSpread(spread(wk)), "%.1f"), sp(cleanSpread(spread(wal)), "%.0f"), sp(cleanSpread(p.PerSec), "%.0f"),
			sp(cleanSpread(p.P50ms), "%.2f"), sp(cleanSpread(p.P99ms), "%.2f"))
	}
	fmt.Fprintf(w, "\tHEADLINE history ÷ empty\tburn-down %s\tpolls %s\n\n", sp(h.BurnDownOverEmpty, "%.3f"), sp(h.PollsOverEmpty, "%.3f"))
}

// waitNoAutovacuum waits until no autovacuum worker runs on the server.
func (e *env) waitNoAutovacuum(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		var n int
		if err := e.admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'`).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("autovacuum still running after %s", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
