package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// BurnDown is one burn-down of N jobs.
//
// Both contenders are timed the same way, by the database clock: from the
// first job's pick (jobsd started_at, River attempted_at) to the last one's
// completion (completed_at, finalized_at). WallSeconds, from starting the
// worker (a process for jobsd, a library call for River) until the bench saw
// nothing left (polled every 100 ms), is kept for context.
type BurnDown struct {
	Contender   string  `json:"contender"`
	Jobs        int     `json:"jobs"`
	Seconds     float64 `json:"seconds"`
	WallSeconds float64 `json:"wallSeconds"`
	JobsPerSec  float64 `json:"jobsPerSec"`
	TimedOut    bool    `json:"timedOut,omitempty"`
	Audit       string  `json:"audit"`
	AuditOK     bool    `json:"auditOk"`
	// Work is what the burn-down cost PostgreSQL and the worker, per job
	// completed (work.go).
	Work *Work `json:"work,omitempty"`
}

// WorkerResult is scenario 2.
type WorkerResult struct {
	// Server is "durable" (the headline) or "non-durable", and PGSettings
	// its settings.
	Server            string                `json:"server"`
	PGSettings        map[string]string     `json:"postgresSettings"`
	Jobs              int                   `json:"jobs"`
	JobsdConcurrency  int                   `json:"jobsdWorkerConcurrency"`
	JobsdConcurrency2 int                   `json:"jobsdWorkerConcurrencyPerProcessWith2"`
	RiverMaxWorkers   int                   `json:"riverMaxWorkers"`
	RiverConfig       string                `json:"riverConfig"`
	Runs              map[string][]BurnDown `json:"runs"`
	JobsPerSec        map[string]Spread     `json:"jobsPerSec"`
	Jobsd1OverRiver   Spread                `json:"jobsd1OverRiver"`
	Jobsd2OverRiver   Spread                `json:"jobsd2OverRiver"`
	Jobsd2OverJobsd1  Spread                `json:"jobsd2OverJobsd1"`
	// ObservedOverJobsd1 is jobsd x1 with metrics and tracing on (every
	// attempt sampled, exported over OTLP/HTTP to a sink in the bench
	// process) ÷ jobsd x1 with both off, per repeat.
	ObservedOverJobsd1 Spread `json:"observedOverJobsd1,omitempty"`
	// SampledOverJobsd1 is jobsd x1 with metrics on and tracing at the
	// sampling the README recommends for production (1% of traces) ÷ jobsd
	// x1 with both off, per repeat.
	SampledOverJobsd1 Spread `json:"sampledOverJobsd1,omitempty"`
	// TracedAttemptCPUus is what tracing every attempt adds to the worker's
	// CPU per job: jobsd x1 observed minus jobsd x1, per repeat.
	TracedAttemptCPUus Spread `json:"tracedAttemptCpuUs,omitempty"`
	// WebhooksOverJobsd1 is jobsd x1 with one webhook endpoint per user
	// (every outcome statement writes one outbox row; a jobsd serve process
	// sends every event meanwhile, to a receiver in the bench) ÷ jobsd x1
	// without endpoints (and without the serve process), per repeat. Goal
	// ≥ 0.95.
	WebhooksOverJobsd1 Spread `json:"webhooksOverJobsd1,omitempty"`
	// WebhooksOutboxOverJobsd1 is the same with nothing sending (no serve
	// process; the outbox rows stay): the worker's own share of the cost,
	// per repeat.
	WebhooksOutboxOverJobsd1 Spread `json:"webhooksOutboxOverJobsd1,omitempty"`
	ObservedOverRiver        Spread `json:"observedOverRiver,omitempty"`
	// WorkPerJob is each contender's Work per job over the repeats, and
	// the two ratios jobsd x1 ÷ River x1, per repeat: PostgreSQL's and the
	// worker's CPU per job together, and WAL bytes per job.
	WorkPerJob         map[string]WorkSpread `json:"workPerJob"`
	CPUPerJobOverRiver Spread                `json:"cpuPerJobJobsd1OverRiver"`
	WALPerJobOverRiver Spread                `json:"walPerJobJobsd1OverRiver"`
	AuditFailures      int                   `json:"auditFailures"`
	ConcurrencyProbe   map[int]float64       `json:"concurrencyProbe,omitempty"`
	// Diagnostics are not headline figures: jobsd x1 with a change made to
	// the bench's own database (never to the service code), to show where
	// the time goes.
	Diagnostics map[string]float64 `json:"diagnostics,omitempty"`
}

// workerContenders, when set (-worker-contenders), are the only contenders
// scenario 2 runs, and workerRepeatsOverride, when above 0
// (-worker-repeats), its repeats: diagnostics.
var (
	workerContenders      []string
	workerRepeatsOverride int
)

type workerOpts struct {
	sizes        []int  // one burn-down scenario per size
	jobs         int    // this scenario's size
	db           string // this scenario's database name prefix
	repeats      int
	concurrency  int
	concurrency2 int
	timeout      time.Duration
	probe        []int
	probeJobs    int
	diagnose     bool
	observe      bool // also burn down with metrics and tracing on
	webhooks     bool // also burn down with one webhook endpoint per user
	// webhookNice is JOBS_WEBHOOK_NICE of the deliverer ("": jobsd's default).
	webhookNice string
	// webhookIdle puts the deliverer under SCHED_IDLE (a diagnostic).
	webhookIdle bool
	// webhookPause stops the deliverer during the burn-down (a diagnostic).
	webhookPause bool
}

const (
	riverMaxWorkers = 2000 // River's own benchmark (cmd/river/riverbench) uses these
	riverCooldown   = 2 * time.Millisecond
	riverPoll       = 20 * time.Millisecond
)

func runWorkerScenario(ctx context.Context, e *env, o workerOpts) (*WorkerResult, error) {
	jurl, jpool, err := e.createJobsDB(ctx, o.db)
	if err != nil {
		return nil, err
	}
	defer jpool.Close()
	rurl, err := e.createDB(ctx, o.db+"_river", false)
	if err != nil {
		return nil, err
	}
	rcfg, err := pgxpool.ParseConfig(rurl)
	if err != nil {
		return nil, err
	}
	rpool, err := pgxpool.NewWithConfig(ctx, rcfg)
	if err != nil {
		return nil, err
	}
	defer rpool.Close()
	migrator, err := rivermigrate.New(riverpgxv5.New(rpool), nil)
	if err != nil {
		return nil, err
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return nil, fmt.Errorf("river migrate: %w", err)
	}

	res := &WorkerResult{Server: e.label, PGSettings: e.pgConf, Jobs: o.jobs, JobsdConcurrency: o.concurrency, JobsdConcurrency2: o.concurrency2,
		RiverMaxWorkers: riverMaxWorkers,
		RiverConfig: fmt.Sprintf("MaxWorkers %d, FetchCooldown %s, FetchPollInterval %s (River's own benchmark settings); default pgxpool; client in the bench process",
			riverMaxWorkers, riverCooldown, riverPoll),
		Runs: map[string][]BurnDown{}}

	if len(o.probe) > 0 {
		res.ConcurrencyProbe = map[int]float64{}
		for _, c := range o.probe {
			b, err := jobsdBurnDown(ctx, e, jpool, jurl, o.probeJobs, 1, 1, c, o.timeout)
			if err != nil {
				return nil, err
			}
			res.ConcurrencyProbe[c] = b.JobsPerSec
			logf("  probe jobsd concurrency %d: %.0f jobs/s (%d jobs)", c, b.JobsPerSec, o.probeJobs)
		}
	}

	var observed, sampled []string
	if o.observe {
		sink := otlpSink()
		defer sink.Close()
		observed = observedEnv(sink.URL)
		sampled = append(observedEnv(sink.URL), recommendedSampling...)
	}
	var r1, r2, r21, ro1, ror, rs1, traced, rcpu, rwal, rwh, rwo []float64
	// Every contender runs once per repeat; odd repeats run them in the
	// reverse order, so that no ratio always pairs an early run of a
	// repeat with a late one (the server drifts over a repeat: its
	// checkpoints, the WAL it recycles).
	type contender struct {
		name string
		run  func() (BurnDown, error)
	}
	jobsd := func(procs, conc int, env ...string) func() (BurnDown, error) {
		return func() (BurnDown, error) {
			return jobsdBurnDown(ctx, e, jpool, jurl, o.jobs, 1, procs, conc, o.timeout, env...)
		}
	}
	const x1, x2, rx1, obs, smp, wh, wo = "jobsd x1", "jobsd x2", "river x1", "jobsd x1 observed", "jobsd x1 sampled 1%", "jobsd x1 webhooks", "jobsd x1 webhook outbox"
	contenders := []contender{
		{x1, jobsd(1, o.concurrency)},
		{x2, jobsd(2, o.concurrency2)},
		{rx1, func() (BurnDown, error) { return riverBurnDown(ctx, e, rpool, o.jobs, o.timeout) }},
	}
	if o.observe {
		contenders = append(contenders, contender{obs, jobsd(1, o.concurrency, observed...)}, contender{smp, jobsd(1, o.concurrency, sampled...)})
	}
	if o.webhooks {
		contenders = append(contenders, contender{wh, func() (BurnDown, error) {
			return webhooksBurnDown(ctx, e, jpool, jurl, o.jobs, o.concurrency, o.timeout, o.webhookNice, o.webhookIdle, o.webhookPause, true)
		}}, contender{wo, func() (BurnDown, error) {
			return webhooksBurnDown(ctx, e, jpool, jurl, o.jobs, o.concurrency, o.timeout, o.webhookNice, o.webhookIdle, o.webhookPause, false)
		}})
	}
	if workerContenders != nil {
		contenders = slices.DeleteFunc(contenders, func(c contender) bool { return !slices.Contains(workerContenders, c.name) })
	}
	if workerRepeatsOverride > 0 {
		o.repeats = workerRepeatsOverride
	}
	for rep := range o.repeats {
		order := slices.Clone(contenders)
		if rep%2 == 1 {
			slices.Reverse(order)
		}
		got := map[string]BurnDown{}
		for _, c := range order {
			b, err := c.run()
			if err != nil {
				return nil, err
			}
			b.Contender = c.name
			got[c.name] = b
			res.Runs[b.Contender] = append(res.Runs[b.Contender], b)
			if !b.AuditOK {
				res.AuditFailures++
			}
			logf("  rep %d %-16s %8.0f jobs/s  %.2fs first pick to last completion (%.2fs wall)  %s  audit: %s", rep+1, b.Contender, b.JobsPerSec, b.Seconds, b.WallSeconds, b.Work, b.Audit)
		}
		b1, b2, rv := got[x1], got[x2], got[rx1]
		over := func(dst *[]float64, a, b BurnDown) {
			if a.JobsPerSec > 0 && b.JobsPerSec > 0 { // both ran
				*dst = append(*dst, a.JobsPerSec/b.JobsPerSec)
			}
		}
		over(&r1, b1, rv)
		over(&r2, b2, rv)
		over(&r21, b2, b1)
		if b1.Work != nil && rv.Work != nil {
			rcpu = append(rcpu, b1.Work.CPUusPerJob()/rv.Work.CPUusPerJob())
			rwal = append(rwal, b1.Work.WALBytes/rv.Work.WALBytes)
		}
		if o.observe {
			bo, bs := got[obs], got[smp]
			over(&ro1, bo, b1)
			over(&ror, bo, rv)
			over(&rs1, bs, b1)
			if b1.Work != nil && bo.Work != nil {
				traced = append(traced, bo.Work.WorkerCPUus-b1.Work.WorkerCPUus)
			}
		}
		if o.webhooks {
			over(&rwh, got[wh], b1)
			over(&rwo, got[wo], b1)
		}
	}
	res.JobsPerSec, res.WorkPerJob = jobsPerSec(res.Runs), workPerJob(res.Runs)
	res.CPUPerJobOverRiver, res.WALPerJobOverRiver = spread(rcpu), spread(rwal)
	res.Jobsd1OverRiver, res.Jobsd2OverRiver, res.Jobsd2OverJobsd1 = spread(r1), spread(r2), spread(r21)
	if o.observe {
		res.ObservedOverJobsd1, res.ObservedOverRiver = spread(ro1), spread(ror)
		res.SampledOverJobsd1, res.TracedAttemptCPUus = spread(rs1), spread(traced)
	}
	res.WebhooksOverJobsd1, res.WebhooksOutboxOverJobsd1 = spread(rwh), spread(rwo)
	if o.diagnose {
		res.Diagnostics = map[string]float64{}
		// The per-row jobs_changed NOTIFY trigger fires on every claim and
		// every completion; how much does it cost the burn-down?
		if _, err := jpool.Exec(ctx, "ALTER TABLE jobs DISABLE TRIGGER jobs_changed"); err != nil {
			return nil, err
		}
		b, err := jobsdBurnDown(ctx, e, jpool, jurl, o.jobs, 1, 1, o.concurrency, o.timeout)
		if _, err2 := jpool.Exec(ctx, "ALTER TABLE jobs ENABLE TRIGGER jobs_changed"); err2 != nil && err == nil {
			err = err2
		}
		if err != nil {
			return nil, err
		}
		res.Diagnostics["jobsd x1 jobs/s with the jobs_changed trigger disabled"] = b.JobsPerSec
		logf("  diagnostic: jobsd x1 without the per-row jobs_changed NOTIFY trigger: %.0f jobs/s (audit: %s)", b.JobsPerSec, b.Audit)
	}
	return res, nil
}

// uuidV7SQL is, for the g-th row of a seeding statement, a time-ordered
// UUID (version 7) as the API gives every job it creates (uuid.NewV7): a
// millisecond timestamp, then a 12-bit sequence within it, then random bits.
// PostgreSQL 15 has no uuidv7(); random UUIDs (gen_random_uuid) would seed
// the queue in an order no jobsd job has, scattering every claim and
// outcome over the table and its indexes (about 20% fewer jobs/s in the
// lab). River's jobs keep River's own default, a bigserial id.
const uuidV7SQL = `(lpad(to_hex(floor(extract(epoch FROM now()) * 1000)::bigint + g / 4096), 12, '0')
	|| '7' || lpad(to_hex(g % 4096), 3, '0')
	|| to_hex(8 + floor(random() * 4)::int) || substr(md5(random()::text), 1, 15))::uuid`

// jobsdBurnDown inserts n AI_PREVIEW jobs owned by users users in turn
// (user-0, user-1, ..., as users who submit at the same time interleave in
// the queue), starts procs worker processes and times them until no job is
// left unfinished, then audits the rows.
func jobsdBurnDown(ctx context.Context, e *env, pool *pgxpool.Pool, url string, n, users, procs, conc int, timeout time.Duration, env ...string) (BurnDown, error) {
	return jobsdBurnDownBeside(ctx, e, pool, url, nil, n, users, procs, conc, timeout, env...)
}

// jobsdBurnDownBeside is jobsdBurnDown on a table that may hold history:
// with settle (not nil), it deletes only the previous burn-down's jobs (and
// any other job not of a hist-* user) instead of truncating the table,
// audits only its own jobs (user-*), and calls settle once the new jobs
// are in, just before the measurement starts.
func jobsdBurnDownBeside(ctx context.Context, e *env, pool *pgxpool.Pool, url string, settle func(context.Context) error,
	n, users, procs, conc int, timeout time.Duration, env ...string) (BurnDown, error) {
	b := BurnDown{Contender: fmt.Sprintf("jobsd x%d", procs), Jobs: n}
	history := settle != nil
	reset, own := "TRUNCATE jobs, job_queue", "" // a fresh queue for each burn-down, as River's table is
	if history {
		reset, own = "TRUNCATE job_queue; DELETE FROM jobs WHERE user_id NOT LIKE 'hist-%'", "WHERE user_id LIKE 'user-%'"
	}
	if _, err := pool.Exec(ctx, reset); err != nil {
		return b, err
	}
	const batch = 100_000
	for lo := 0; lo < n; lo += batch {
		if _, err := pool.Exec(ctx, `INSERT INTO jobs (id, user_id, type, input)
			SELECT `+uuidV7SQL+`, 'user-' || (g % $3), 'AI_PREVIEW', '{"prompt":"x"}' FROM generate_series($2::bigint, $2 + $1 - 1) g`,
			min(batch, n-lo), lo, max(users, 1)); err != nil {
			return b, fmt.Errorf("insert jobs: %w", err)
		}
	}
	if _, err := pool.Exec(ctx, "VACUUM ANALYZE jobs"); err != nil {
		return b, err
	}
	if history {
		if err := settle(ctx); err != nil {
			return b, err
		}
	}
	meter, err := e.startWork(ctx, pool.Config().ConnConfig.Database)
	if err != nil {
		return b, err
	}
	start := time.Now()
	var ps []*proc
	defer func() {
		for _, p := range ps {
			p.stop()
		}
	}()
	for i := range procs {
		p, err := e.launchWorker(fmt.Sprintf("worker-%d-%d", procs, i), url, conc, env...)
		if err != nil {
			return b, err
		}
		ps = append(ps, p)
	}
	for _, p := range ps { // started together, as before, then each seen ready
		if err := p.WaitReady(ctx, 30*time.Second); err != nil {
			return b, err
		}
	}
	// Unfinished = the queue (job_queue holds exactly the PENDING and
	// PROCESSING jobs): cheap enough to ask often without a scan of the
	// whole table.
	err = pollUntilZeroEvery(ctx, pool, `SELECT count(*) FROM job_queue`, burnDownPoll(n), timeout, func() error {
		for _, p := range ps {
			if p.exited() {
				return fmt.Errorf("jobsd worker exited: %w\n%s", p.Err(), p.logTail())
			}
		}
		return nil
	})
	elapsed := time.Since(start)
	if errors.Is(err, errTimeout) {
		b.TimedOut = true
	} else if err != nil {
		return b, err
	}
	var pids []int
	for _, p := range ps {
		pids = append(pids, p.Cmd.Process.Pid)
	}
	if err := meter.workerDone(pids...); err != nil {
		return b, err
	}
	for _, p := range ps {
		p.stop()
	}
	ps = nil
	if b.Work, err = meter.stop(ctx); err != nil {
		return b, err
	}
	var total, completed, attempts1, finishedNoLease int64
	var busy float64
	if err := pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE status = 'COMPLETED'),
		count(*) FILTER (WHERE attempts = 1), count(*) FILTER (WHERE lease_owner IS NULL AND completed_at IS NOT NULL),
		COALESCE(EXTRACT(EPOCH FROM max(completed_at) - min(started_at))::float8, 0)
		FROM jobs `+own).Scan(&total, &completed, &attempts1, &finishedNoLease, &busy); err != nil {
		return b, err
	}
	b.setRate(completed, busy, elapsed)
	b.Work.perJob(completed)
	b.Audit = fmt.Sprintf("%d rows, %d COMPLETED, %d with attempts=1, %d unfinished", total, completed, attempts1, total-finishedNoLease)
	b.AuditOK = !b.TimedOut && total == int64(n) && completed == int64(n) && attempts1 == int64(n) && finishedNoLease == int64(n)
	if b.TimedOut {
		b.Audit += " (timed out: rate is completed/elapsed)"
	}
	return b, nil
}

// webhooksBurnDown is jobsd x1's burn-down with one enabled webhook
// endpoint for its user (the burn-down's jobs are all of one user), and the
// delivery running as deployed on cores shared with the worker: a `jobsd
// deliver` process at its lower CPU priority (JOBS_WEBHOOK_NICE, nice
// unless given: jobsd's default) and jobsd's default yield settings (it
// claims nothing while 1,000 jobs or more are due and unclaimed, for up
// to 30 s of an event's wait: here, the whole burn-down), whose delivery
// loop expands the outbox
// rows that the outcome statements write and sends every event to a
// receiver in the bench process answering 204
// (JOBS_WEBHOOK_ALLOW_PRIVATE=true for its loopback address;
// JOBS_WEBHOOK_PER_ENDPOINT=32, the process's whole concurrency, since one
// endpoint takes every event). The burn-down is timed as the others; its
// Work counts PostgreSQL's CPU and WAL for everything in that window, the
// delivery's statements included (not the deliverer's own CPU). The
// audit then waits, after the timing stopped, for every event to be
// recorded DELIVERED (one per job), says how long the last delivery
// trailed the last job's end, the deliverer's CPU per event and the nice
// values it and the bench (whose nice the worker and PostgreSQL inherit)
// ran at: the deliverer yields only where its nice is above theirs. Without
// deliver, nothing sends (no deliverer): the burn-down pays only the
// worker's share, the outbox rows, and the audit counts the jobs they
// hold. The endpoint, its events and the outbox are deleted afterwards.
func webhooksBurnDown(ctx context.Context, e *env, pool *pgxpool.Pool, url string, n, conc int, timeout time.Duration, nice string, idle, pause, deliver bool) (BurnDown, error) {
	var received atomic.Int64
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		received.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer rcv.Close()
	defer func() {
		_, _ = pool.Exec(context.WithoutCancel(ctx), `TRUNCATE webhook_deliveries, webhook_outbox, webhook_endpoints`)
	}()
	if _, err := pool.Exec(ctx, `INSERT INTO webhook_endpoints (id, user_id, url, event_types, secret)
		VALUES (gen_random_uuid(), 'user-0', $1, ARRAY['job.completed', 'job.failed'], '\x00'::bytea)`, rcv.URL+"/hook"); err != nil {
		return BurnDown{}, fmt.Errorf("webhooks: add an endpoint: %w", err)
	}
	if !deliver {
		b, err := jobsdBurnDown(ctx, e, pool, url, n, 1, 1, conc, timeout)
		if err != nil {
			return b, err
		}
		var held, rows int64
		if err := pool.QueryRow(ctx, `SELECT COALESCE(sum(cardinality(job_ids)), 0), count(*) FROM webhook_outbox`).Scan(&held, &rows); err != nil {
			return b, err
		}
		b.Audit += fmt.Sprintf(", %d outbox rows holding %d jobs (nothing sending)", rows, held)
		b.AuditOK = b.AuditOK && held == int64(n)
		return b, nil
	}
	env := []string{"JOBS_WEBHOOK_ALLOW_PRIVATE=true", "JOBS_WEBHOOK_PER_ENDPOINT=32"}
	if nice != "" {
		env = append(env, "JOBS_WEBHOOK_NICE="+nice)
	}
	srv, err := e.startDeliver(ctx, "deliver", url, env...)
	if err != nil {
		return BurnDown{}, err
	}
	defer srv.stop()
	if idle {
		pid := strconv.Itoa(srv.Cmd.Process.Pid)
		if out, err := exec.CommandContext(ctx, "chrt", "--idle", "--all-tasks", "--pid", "0", pid).CombinedOutput(); err != nil {
			return BurnDown{}, fmt.Errorf("chrt --idle jobsd deliver: %w: %s", err, out)
		}
	}
	if pause {
		if err := srv.Signal(syscall.SIGSTOP); err != nil {
			return BurnDown{}, err
		}
	}
	b, err := jobsdBurnDown(ctx, e, pool, url, n, 1, 1, conc, timeout)
	if pause {
		if err := srv.Signal(syscall.SIGCONT); err != nil {
			return b, err
		}
		b.Audit += ", the deliverer stopped during the burn-down"
	}
	if err != nil {
		return b, err
	}
	timed := time.Now()
	delivered := `SELECT count(*) FROM webhook_deliveries WHERE status = 'DELIVERED'`
	err = pollUntilZero(ctx, pool, fmt.Sprintf(`SELECT %d - (%s)`, n, delivered), timeout, func() error {
		if srv.exited() {
			return fmt.Errorf("jobsd deliver exited: %w\n%s", srv.Err(), srv.logTail())
		}
		return nil
	})
	if err != nil && !errors.Is(err, errTimeout) {
		return b, err
	}
	var events, outbox int64
	var trailed float64
	if err := pool.QueryRow(ctx, delivered).Scan(&events); err != nil {
		return b, err
	}
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM webhook_outbox),
		COALESCE(EXTRACT(EPOCH FROM (SELECT max(ended_at) FROM webhook_deliveries) - (SELECT max(completed_at) FROM jobs))::float8, 0)`).Scan(&outbox, &trailed); err != nil {
		return b, err
	}
	b.Audit += fmt.Sprintf(", %d webhook events DELIVERED (%d requests received), the last %.2fs after the last job ended (the bench waited %.2fs after the timing stopped)",
		events, received.Load(), trailed, time.Since(timed).Seconds())
	if st, err := procStat(srv.Cmd.Process.Pid); err == nil && events > 0 {
		b.Audit += fmt.Sprintf(", jobsd deliver CPU %.1f µs per event (its whole run, not in Work)", ticks(st.utime+st.stime)*1e6/float64(events))
		if own, err := procStat(os.Getpid()); err == nil {
			b.Audit += fmt.Sprintf(", at nice %d (the bench, the worker and PostgreSQL at %d)", st.nice, own.nice)
			if idle {
				b.Audit += ", under SCHED_IDLE"
			}
		}
	}
	if outbox > 0 {
		b.Audit += fmt.Sprintf(", %d outbox rows left", outbox)
	}
	if yielded, err := scrapeSeries(ctx, srv.MetricsAddr, "jobsd_webhook_yielded_seconds_total"); err == nil {
		b.Audit += fmt.Sprintf(", it yielded to the queue's backlog for %.2fs", yielded)
	}
	if events != int64(n) {
		logf("  jobsd deliver last output lines:\n%s", srv.logTail())
	}
	b.AuditOK = b.AuditOK && events == int64(n)
	return b, nil
}

// jobsPerSec is the spread of each contender's burn-down rate.
func jobsPerSec(runs map[string][]BurnDown) map[string]Spread {
	out := map[string]Spread{}
	for k, bs := range runs {
		var v []float64
		for _, b := range bs {
			v = append(v, b.JobsPerSec)
		}
		out[k] = spread(v)
	}
	return out
}

// WorkSpread is the spread of each Work figure over the repeats.
type WorkSpread struct {
	PGCPUus     Spread `json:"pgCpuUsPerJob"`
	WorkerCPUus Spread `json:"workerCpuUsPerJob"`
	CPUus       Spread `json:"cpuUsPerJob"` // PostgreSQL + worker
	WALBytes    Spread `json:"walBytesPerJob"`
	Commits     Spread `json:"commitsPerJob"`
}

// workPerJob is the spread of each contender's Work per job.
func workPerJob(runs map[string][]BurnDown) map[string]WorkSpread {
	out := map[string]WorkSpread{}
	for k, bs := range runs {
		var pg, wk, cpu, wal, c []float64
		for _, b := range bs {
			if w := b.Work; w != nil {
				pg, wk, cpu = append(pg, w.PGCPUus), append(wk, w.WorkerCPUus), append(cpu, w.CPUusPerJob())
				wal, c = append(wal, w.WALBytes), append(c, w.Commits)
			}
		}
		out[k] = WorkSpread{spread(pg), spread(wk), spread(cpu), spread(wal), spread(c)}
	}
	return out
}

func (w WorkSpread) clean() WorkSpread {
	return WorkSpread{cleanSpread(w.PGCPUus), cleanSpread(w.WorkerCPUus), cleanSpread(w.CPUus), cleanSpread(w.WALBytes), cleanSpread(w.Commits)}
}

// setRate records the rate over the database-clock time (first pick to last
// completion), falling back to the wall time if that is empty.
func (b *BurnDown) setRate(completed int64, dbSeconds float64, wall time.Duration) {
	b.WallSeconds = wall.Seconds()
	b.Seconds = dbSeconds
	if b.Seconds <= 0 || b.TimedOut {
		b.Seconds = b.WallSeconds
	}
	b.JobsPerSec = float64(completed) / b.Seconds
}

// pollEvery is how often a wait asks whether anything is left. Both
// contenders are timed by the database clock, so it only bounds the wall
// time; every 100 ms, counting a backlog whose index entries the burn-down
// leaves dead took a noticeable share of the two CPUs from the contender.
const pollEvery = 500 * time.Millisecond

// burnDownPoll is how often a burn-down of n jobs asks: about ten times
// over the burn-down whatever n, since each count scans what is left. At a
// fixed interval the bench's own counting grew with the square of n,
// charged to the contender (both alike): at 1M jobs, counted every second,
// it read job_queue's heap 214k times (0.21 blocks per job) from outside
// shared buffers, more than the burn-down read of jobs (130k).
func burnDownPoll(n int) time.Duration {
	return min(max(time.Duration(n)*time.Second/500_000, 250*time.Millisecond), 5*time.Second)
}

func pollUntilZero(ctx context.Context, pool *pgxpool.Pool, q string, timeout time.Duration, check func() error) error {
	return pollUntilZeroEvery(ctx, pool, q, pollEvery, timeout, check)
}

func pollUntilZeroEvery(ctx context.Context, pool *pgxpool.Pool, q string, every, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		var left int64
		if err := pool.QueryRow(ctx, q).Scan(&left); err != nil {
			return err
		}
		if left == 0 {
			return nil
		}
		if err := check(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return errTimeout
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

type noopArgs struct{}

func (noopArgs) Kind() string { return "noop" }

type noopWorker struct {
	river.WorkerDefaults[noopArgs]
}

func (noopWorker) Work(context.Context, *river.Job[noopArgs]) error { return nil }

func riverBurnDown(ctx context.Context, e *env, pool *pgxpool.Pool, n int, timeout time.Duration) (BurnDown, error) {
	b := BurnDown{Contender: "river x1", Jobs: n}
	// The same garbage-collector setting as the jobsd worker's default, so
	// that neither contender wins by it.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	if _, err := pool.Exec(ctx, "TRUNCATE river_job"); err != nil {
		return b, err
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, &noopWorker{})
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		FetchCooldown:     riverCooldown,
		FetchPollInterval: riverPoll,
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: riverMaxWorkers}},
		Workers:           workers,
	})
	if err != nil {
		return b, err
	}
	params := make([]river.InsertManyParams, 0, 10_000)
	for lo := 0; lo < n; lo += 10_000 {
		params = params[:0]
		for range min(10_000, n-lo) {
			params = append(params, river.InsertManyParams{Args: noopArgs{}})
		}
		if _, err := client.InsertManyFast(ctx, params); err != nil {
			return b, fmt.Errorf("river InsertManyFast: %w", err)
		}
	}
	if _, err := pool.Exec(ctx, "VACUUM ANALYZE river_job"); err != nil {
		return b, err
	}
	meter, err := e.startWork(ctx, pool.Config().ConnConfig.Database)
	if err != nil {
		return b, err
	}
	start := time.Now()
	if err := client.Start(ctx); err != nil {
		return b, err
	}
	err = pollUntilZeroEvery(ctx, pool, `SELECT count(*) FROM river_job WHERE state IN ('available', 'running', 'retryable', 'scheduled', 'pending')`, burnDownPoll(n),
		timeout, func() error { return nil })
	elapsed := time.Since(start)
	if werr := meter.workerDone(); werr != nil && err == nil {
		err = werr
	}
	stopCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_ = client.Stop(stopCtx)
	cancel()
	if errors.Is(err, errTimeout) {
		b.TimedOut = true
	} else if err != nil {
		return b, err
	}
	// River's connections stay in the pool: closing them ends their
	// backends, which report their statistics as they exit, as jobsd's
	// do when its worker stops.
	pool.Reset()
	if b.Work, err = meter.stop(ctx); err != nil {
		return b, err
	}
	var total, completed, attempt1 int64
	var busy float64
	if err := pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE state = 'completed'),
		count(*) FILTER (WHERE attempt = 1),
		COALESCE(EXTRACT(EPOCH FROM max(finalized_at) - min(attempted_at))::float8, 0)
		FROM river_job`).Scan(&total, &completed, &attempt1, &busy); err != nil {
		return b, err
	}
	b.setRate(completed, busy, elapsed)
	b.Work.perJob(completed)
	b.Audit = fmt.Sprintf("%d rows, %d completed, %d with attempt=1", total, completed, attempt1)
	b.AuditOK = !b.TimedOut && total == int64(n) && completed == int64(n) && attempt1 == int64(n)
	if b.TimedOut {
		b.Audit += " (timed out: rate is completed/elapsed)"
	}
	return b, nil
}

// otlpSink is an OTLP/HTTP receiver that reads and drops every export: the
// collector a traced worker sends its spans to, at no cost to the worker
// beyond the export itself.
func otlpSink() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK) // an empty ExportTraceServiceResponse
	}))
}

// recommendedSampling is the sampling the README recommends at thousands
// of jobs a second.
var recommendedSampling = []string{"OTEL_TRACES_SAMPLER=parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG=0.01"}

// observedEnv is a worker's environment with its metrics listener on and
// every attempt traced (OpenTelemetry's default sampler), exported to sink.
func observedEnv(sink string) []string {
	return []string{"JOBS_METRICS_ADDR=127.0.0.1:0", "OTEL_EXPORTER_OTLP_ENDPOINT=" + sink}
}

// scrapeSeries reads the value of an unlabelled series from the /metrics
// page of the jobsd process whose metrics listener is at addr.
func scrapeSeries(ctx context.Context, addr, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("%s: no series %s", addr, name)
}
