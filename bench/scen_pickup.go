package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PickupRun is one paced-insert run.
type PickupRun struct {
	Rate         int     `json:"offeredPerSec"`
	AchievedRate float64 `json:"achievedPerSec"`
	Jobs         int     `json:"jobs"`
	Picked       int     `json:"picked"`
	P50ms        float64 `json:"p50ms"`
	P90ms        float64 `json:"p90ms"`
	P99ms        float64 `json:"p99ms"`
	MaxMs        float64 `json:"maxMs"`
	Negative     int     `json:"negativeDelays"`
	// The same delays against the INSERT's clock_timestamp() (DB clock, end
	// of the inserting statement), free of the client round trip.
	DBP50ms    float64 `json:"dbClockP50ms"`
	DBP99ms    float64 `json:"dbClockP99ms"`
	DBNegative int     `json:"dbClockNegativeDelays"`
}

// PickupResult is scenario 3.
type PickupResult struct {
	Concurrency int                    `json:"jobsdWorkerConcurrency"`
	Seconds     float64                `json:"secondsPerRun"`
	Runs        map[string][]PickupRun `json:"runs"`
	P50ms       map[string]Spread      `json:"p50ms"`
	P99ms       map[string]Spread      `json:"p99ms"`
	DBP50ms     map[string]Spread      `json:"dbClockP50ms"`
	DBP99ms     map[string]Spread      `json:"dbClockP99ms"`
	Caveat      string                 `json:"caveat"`
}

type pickupOpts struct {
	rates       []int
	dur         time.Duration
	repeats     int
	concurrency int
	// observe also runs the lowest rate with the worker's metrics and
	// tracing on (every attempt traced, exported to a sink), as "<rate>/s
	// observed": the pickup goals must hold for an observed worker too.
	observe bool
}

// observedKey names the runs of a rate with metrics and tracing on.
func observedKey(rate int) string { return fmt.Sprintf("%d/s observed", rate) }

func runPickupScenario(ctx context.Context, e *env, o pickupOpts) (*PickupResult, error) {
	url, err := e.createDB(ctx, "pickup", true)
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns, cfg.MinConns = 8, 8
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	res := &PickupResult{Concurrency: o.concurrency, Seconds: o.dur.Seconds(), Runs: map[string][]PickupRun{},
		P50ms: map[string]Spread{}, P99ms: map[string]Spread{}, DBP50ms: map[string]Spread{}, DBP99ms: map[string]Spread{},
		Caveat: "delay = started_at (DB now() = start of the claim transaction) - the time the bench process saw its INSERT's " +
			"autocommit return; both on this machine's clock. The claim's now() is taken before the claim statement runs " +
			"and the commit is observed after a round trip, so delays can read slightly low (even negative). " +
			"The dbClock figures use the INSERT's clock_timestamp() instead (DB clock on both sides, no client round trip)."}
	type variant struct {
		key  string
		rate int
		env  []string
	}
	var variants []variant
	for _, rate := range o.rates {
		variants = append(variants, variant{fmt.Sprintf("%d/s", rate), rate, nil})
	}
	if o.observe && len(o.rates) > 0 {
		sink := otlpSink()
		defer sink.Close()
		variants = append(variants, variant{observedKey(o.rates[0]), o.rates[0], observedEnv(sink.URL)})
	}
	for rep := range o.repeats {
		for _, v := range variants {
			r, err := pickupRun(ctx, e, pool, url, v.rate, o.dur, o.concurrency, v.env...)
			if err != nil {
				return nil, err
			}
			res.Runs[v.key] = append(res.Runs[v.key], r)
			logf("  rep %d %-16s (%.0f achieved): pickup p50 %.2fms p90 %.2fms p99 %.2fms max %.2fms (%d/%d picked, %d negative); vs DB clock_timestamp(): p50 %.2fms p99 %.2fms (%d negative)",
				rep+1, v.key, r.AchievedRate, r.P50ms, r.P90ms, r.P99ms, r.MaxMs, r.Picked, r.Jobs, r.Negative, r.DBP50ms, r.DBP99ms, r.DBNegative)
		}
	}
	for k, rs := range res.Runs {
		var a, b, c, d []float64
		for _, r := range rs {
			a, b = append(a, r.P50ms), append(b, r.P99ms)
			c, d = append(c, r.DBP50ms), append(d, r.DBP99ms)
		}
		res.P50ms[k], res.P99ms[k] = spread(a), spread(b)
		res.DBP50ms[k], res.DBP99ms[k] = spread(c), spread(d)
	}
	return res, nil
}

func pickupRun(ctx context.Context, e *env, pool *pgxpool.Pool, url string, rate int, dur time.Duration, conc int, env ...string) (PickupRun, error) {
	r := PickupRun{Rate: rate}
	if _, err := pool.Exec(ctx, "TRUNCATE jobs, job_queue"); err != nil {
		return r, err
	}
	w, err := e.startWorker(fmt.Sprintf("pickup-%d", rate), url, conc, env...)
	if err != nil {
		return r, err
	}
	defer w.stop()
	// Let the worker connect and LISTEN: one job, waited for.
	if _, err := pool.Exec(ctx, `INSERT INTO jobs (id, user_id, type, input) VALUES (gen_random_uuid(), 'warmup', 'AI_PREVIEW', '{"prompt":"x"}')`); err != nil {
		return r, err
	}
	if err := pollUntilZero(ctx, pool, `SELECT count(*) FROM jobs WHERE status <> 'COMPLETED'`, 20*time.Second, func() error {
		if w.exited() {
			return fmt.Errorf("jobsd worker exited: %s", w.logTail())
		}
		return nil
	}); err != nil {
		return r, fmt.Errorf("pickup warm-up: %w", err)
	}

	n := int(float64(rate) * dur.Seconds())
	ids := make([]uuid.UUID, n)
	commits := make([]time.Time, n)
	dbCommits := make([]time.Time, n)
	for i := range ids {
		ids[i] = uuid.New()
	}
	const inserters = 6
	start := time.Now().Add(20 * time.Millisecond)
	interval := time.Second / time.Duration(rate)
	var wg sync.WaitGroup
	errs := make([]error, inserters)
	for g := range inserters {
		wg.Go(func() {
			for i := g; i < n; i += inserters {
				if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
					time.Sleep(d)
				}
				if err := pool.QueryRow(ctx, `INSERT INTO jobs (id, user_id, type, input) VALUES ($1, 'bench', 'AI_PREVIEW', '{"prompt":"x"}') RETURNING clock_timestamp()`, ids[i]).Scan(&dbCommits[i]); err != nil {
					errs[g] = err
					return
				}
				commits[i] = time.Now()
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return r, fmt.Errorf("paced insert: %w", err)
		}
	}
	var last time.Time
	for _, c := range commits {
		if c.After(last) {
			last = c
		}
	}
	r.Jobs = n
	r.AchievedRate = float64(n) / last.Sub(start).Seconds()
	if err := pollUntilZero(ctx, pool, `SELECT count(*) FROM jobs WHERE started_at IS NULL`, 30*time.Second, func() error { return nil }); err != nil && !errors.Is(err, errTimeout) {
		return r, err
	}
	startedAt := make(map[uuid.UUID]time.Time, n)
	rows, err := pool.Query(ctx, `SELECT id, started_at FROM jobs WHERE user_id = 'bench' AND started_at IS NOT NULL`)
	if err != nil {
		return r, err
	}
	for rows.Next() {
		var id uuid.UUID
		var t time.Time
		if err := rows.Scan(&id, &t); err != nil {
			rows.Close()
			return r, err
		}
		startedAt[id] = t
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return r, err
	}
	var delays, dbDelays []time.Duration
	for i, id := range ids {
		t, ok := startedAt[id]
		if !ok {
			continue
		}
		d := t.Sub(commits[i])
		if d < 0 {
			r.Negative++
		}
		delays = append(delays, d)
		d = t.Sub(dbCommits[i])
		if d < 0 {
			r.DBNegative++
		}
		dbDelays = append(dbDelays, d)
	}
	sortDurations(delays)
	sortDurations(dbDelays)
	r.DBP50ms, r.DBP99ms = ms(pct(dbDelays, 50)), ms(pct(dbDelays, 99))
	r.Picked = len(delays)
	r.P50ms, r.P90ms, r.P99ms = ms(pct(delays, 50)), ms(pct(delays, 90)), ms(pct(delays, 99))
	if len(delays) > 0 {
		r.MaxMs = ms(delays[len(delays)-1])
	}
	if r.Picked < n {
		return r, fmt.Errorf("pickup: only %d of %d jobs were started within 30 s", r.Picked, n)
	}
	return r, nil
}
