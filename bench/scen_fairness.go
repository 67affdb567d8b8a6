package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// FairnessResult is the fairness scenario: one user's backlog of slow jobs,
// another user's single job, one worker at the default concurrency.
type FairnessResult struct {
	BacklogJobs int     `json:"backlogJobs"`
	JobSeconds  float64 `json:"backlogJobSeconds"`
	Concurrency int     `json:"workerConcurrency"`
	// StartMs holds, per probe, B's job's start latency: started_at (the
	// claim's now()) − created_at (the INSERT's now()), both by the
	// database clock.
	StartMs []float64 `json:"startLatencyMs"`
	MaxMs   float64   `json:"maxStartLatencyMs"`
	// FIFOSeconds is what B would wait if the backlog were served strictly
	// first: backlog × job time ÷ concurrency.
	FIFOSeconds float64 `json:"fifoWaitSeconds"`
	// BacklogStarted is how many of A's jobs had started when the last
	// probe did (the backlog kept the worker busy throughout).
	BacklogStarted int `json:"backlogStarted"`
}

type fairnessOpts struct {
	backlog     int
	jobTime     time.Duration
	concurrency int
	probes      int
}

// runFairnessScenario seeds user A's backlog, starts one `jobsd worker`
// with the default concurrency, waits until every slot holds one of A's
// jobs, then creates one job for user B at a time and times its start.
func runFairnessScenario(ctx context.Context, e *env, o fairnessOpts) (*FairnessResult, error) {
	url, pool, err := e.createJobsDB(ctx, "fairness")
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	input := fmt.Sprintf(`{"prompt":"[[simulate:slow=%s]] a slow job"}`, o.jobTime)
	if _, err := pool.Exec(ctx, `INSERT INTO jobs (id, user_id, type, input)
		SELECT `+uuidV7SQL+`, 'user-a', 'AI_PREVIEW', $2 FROM generate_series(0, $1 - 1) g`, o.backlog, input); err != nil {
		return nil, fmt.Errorf("insert backlog: %w", err)
	}
	if _, err := pool.Exec(ctx, "VACUUM ANALYZE jobs"); err != nil {
		return nil, err
	}
	w, err := e.startWorker("fairness", url, o.concurrency)
	if err != nil {
		return nil, err
	}
	defer w.stop()
	// Every probe starts with every slot holding one of A's jobs: B's
	// previous job, done in a moment, leaves a free slot until a claim
	// gives it to A.
	busy := fmt.Sprintf(`SELECT %d - count(*) FROM jobs WHERE user_id = 'user-a' AND lease_owner IS NOT NULL`, o.concurrency)
	filled := func() error {
		return pollUntilZero(ctx, pool, busy, 30*time.Second, func() error {
			if w.exited() {
				return fmt.Errorf("jobsd worker exited: %s", w.logTail())
			}
			return nil
		})
	}
	res := &FairnessResult{BacklogJobs: o.backlog, JobSeconds: o.jobTime.Seconds(), Concurrency: o.concurrency,
		FIFOSeconds: float64(o.backlog) * o.jobTime.Seconds() / float64(o.concurrency)}
	for i := range o.probes {
		if err := filled(); err != nil {
			return nil, fmt.Errorf("waiting for the backlog to fill the worker: %w", err)
		}
		ms, err := fairnessProbe(ctx, pool, w)
		if err != nil {
			return nil, fmt.Errorf("probe %d: %w", i+1, err)
		}
		res.StartMs = append(res.StartMs, ms)
		res.MaxMs = max(res.MaxMs, ms)
		logf("  probe %d: user B's job started %.0f ms after its creation", i+1, ms)
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE user_id = 'user-a' AND started_at IS NOT NULL`).Scan(&res.BacklogStarted); err != nil {
		return nil, err
	}
	return res, nil
}

// fairnessProbe creates one job for user B and waits for it to start; it
// returns the start latency by the database clock.
func fairnessProbe(ctx context.Context, pool *pgxpool.Pool, w *proc) (float64, error) {
	var id string
	if err := pool.QueryRow(ctx, `INSERT INTO jobs (id, user_id, type, input)
		VALUES (gen_random_uuid(), 'user-b', 'AI_PREVIEW', '{"prompt":"x"}') RETURNING id::text`).Scan(&id); err != nil {
		return 0, err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var ms *float64
		if err := pool.QueryRow(ctx, `SELECT EXTRACT(EPOCH FROM started_at - created_at)::float8 * 1000 FROM jobs WHERE id = $1`, id).Scan(&ms); err != nil {
			return 0, err
		}
		if ms != nil {
			return *ms, nil
		}
		if w.exited() {
			return 0, fmt.Errorf("jobsd worker exited: %s", w.logTail())
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("user B's job did not start within 2 minutes")
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
