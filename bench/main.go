// Command bench measures jobsd against its own database limit and against
// River, on one throwaway PostgreSQL server. Run it from this folder:
//
//	go run . [-quick] [-out results/latest.json]
//
// Every headline figure is a ratio of two measurements taken in the same run.
// It exits non-zero only when a scenario could not run or an audit failed,
// never because a figure was slow.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// Goal is one target and whether this run met it.
type Goal struct {
	Name     string  `json:"name"`
	Target   string  `json:"target"`
	Measured float64 `json:"measured"`
	Met      bool    `json:"met"`
	Note     string  `json:"note,omitempty"`
	// NotMeasured says why the goal could not be measured in this run
	// (printed as NOT MEASURED, never as met).
	NotMeasured string `json:"notMeasured,omitempty"`
}

// Results is the JSON file.
type Results struct {
	StartedAt  time.Time         `json:"startedAt"`
	Mode       string            `json:"mode"`
	Repeats    int               `json:"repeats"`
	Machine    Machine           `json:"machine"`
	PGSettings map[string]string `json:"postgresSettings"`
	// PGSettingsDurable are the durable server's (the worker scenario's
	// headline and the SQL ceiling run there), when it ran.
	PGSettingsDurable map[string]string `json:"postgresSettingsDurable,omitempty"`
	PGNote            string            `json:"postgresNote"`
	Status            *StatusResult     `json:"statusReads,omitempty"`
	// Polls is the poll path against a fixed-reply server and the composed
	// limit with pgbench (issue 23): part of "status", or alone as "polls".
	Polls *PollGoalsResult `json:"pollGoals,omitempty"`
	// Workers holds one worker burn-down per server and size (300k and 1M
	// jobs in full mode, 50k in quick mode), each with every contender in
	// the same run: on the durable server first (the headline), then on
	// the non-durable one.
	Workers []*WorkerResult `json:"workerThroughput,omitempty"`
	// Ceiling is the SQL-only ceiling of each schema candidate (-only ceiling).
	Ceiling  []CeilingRun    `json:"sqlCeiling,omitempty"`
	Pickup   *PickupResult   `json:"pickupLatency,omitempty"`
	Growth   *GrowthResult   `json:"growth,omitempty"`
	Delivery *DeliveryResult `json:"delivery,omitempty"`
	// Fairness is one user's backlog against another user's single job.
	Fairness *FairnessResult `json:"fairness,omitempty"`
	// DeliveryBurst completes every job at once: a throughput figure, no goal.
	DeliveryBurst *DeliveryResult `json:"deliveryBurst,omitempty"`
	// Limits is the status read through 3 API processes with the
	// deployment-wide per-user limits off and on.
	Limits *LimitsResult `json:"limits,omitempty"`
	// ManyUsers is the worker burn-down of one user's jobs and of the same
	// number over 1,000 users.
	ManyUsers *ManyUsersResult `json:"manyUsers,omitempty"`
	// History is the burn-down and the status polls on an empty jobs table
	// and on one holding 5M finished jobs.
	History *HistoryResult `json:"history,omitempty"`
	Goals   []Goal         `json:"goals"`
	Errors  []string       `json:"errors,omitempty"`
	TODO    []string       `json:"todo,omitempty"`
	Seconds float64        `json:"totalSeconds"`
}

func main() {
	if body, ok := os.LookupEnv(fixedReplyEnv); ok {
		os.Exit(serveFixedReply(body)) // the bench started itself as the fixed-reply server
	}
	if settings, ok := os.LookupEnv(bareReadEnv); ok {
		os.Exit(serveBareRead(settings)) // the bench started itself as a bare-read server
	}
	quick := flag.Bool("quick", false, "small sizes, 2 repeats, one concurrency, no poll goals unless -only names them (under 2 minutes)")
	out := flag.String("out", "results/latest.json", "where to write the JSON results")
	webhooks := flag.Bool("webhooks", true, "scenario 2: also burn down jobsd x1 with one webhook endpoint per user, a jobsd deliver process (at its default lower CPU priority, or -webhook-nice) delivering every event meanwhile (webhooksOverJobsd1), and with nothing sending (webhooksOutboxOverJobsd1)")
	webhookNice := flag.String("webhook-nice", "", "scenario 2: JOBS_WEBHOOK_NICE of the jobsd deliver process (default: jobsd's); it adds to the bench's own nice, at most 19, so under nice -n 19 every process runs at 19 alike")
	webhookIdle := flag.Bool("webhook-sched-idle", false, "scenario 2 (a diagnostic): put the jobsd deliver process under SCHED_IDLE (chrt --idle), below even nice 19, so that a bench run under nice -n 19, where every process is at 19, still has the deliverer below the worker and PostgreSQL")
	webhookPause := flag.Bool("webhook-pause", false, "scenario 2 (a diagnostic): stop the jobsd deliver process (SIGSTOP) for the burn-down and let it go on (SIGCONT) after: what a deliverer that yields completely would give, and how long it then takes to catch up")
	only := flag.String("only", "", "comma-separated scenarios to run (status,polls,worker,history,manyusers,pickup,growth,limits,delivery,fairness,ceiling); default all but ceiling")
	workerJobs := flag.Int("worker-jobs", 0, "override the number of jobs in the worker burn-down (full default 1000000)")
	deliveryPace := flag.Int("delivery-pace", 200, "scenario 5: jobs completed per second in the paced run (10 waiters each)")
	probe := flag.Bool("probe-concurrency", false, "also try jobsd worker concurrency 100/250/500/1000/2000 before scenario 2")
	diagnose := flag.Bool("diagnose", false, "also run jobsd x1 once with the per-row jobs_changed trigger disabled (a diagnostic, not a headline)")
	observe := flag.Bool("observe", true, "scenarios 2 and 3: also burn down with jobsd x1's metrics and tracing on (every attempt traced, exported to a sink), and, in full mode, measure pickup at 500 jobs/s with them on")
	durable := flag.Bool("durable", true, "scenario 2 and the SQL ceiling: run on a second cluster with fsync, synchronous_commit and full_page_writes on (the headline)")
	nondurable := flag.Bool("nondurable", true, "scenario 2 and the SQL ceiling: also run on the non-durable cluster (fsync etc. off) the other scenarios use; quick mode: off unless given")
	serveGOGC := flag.String("serve-gogc", "", "scenario 1b: GOGC for jobsd serve (a diagnostic; default: the process's own)")
	serveEnv := flag.String("serve-env", "", "scenario 1b: more environment for jobsd serve, comma-separated KEY=VALUE (a diagnostic, e.g. GOMAXPROCS=1)")
	workerRepeats := flag.Int("worker-repeats", 0, "scenario 2: repeats of each burn-down (a diagnostic; full mode 3, quick 2)")
	workerOnly := flag.String("worker-contenders", "", `scenario 2: only these contenders, comma-separated (a diagnostic, e.g. "jobsd x1,jobsd x1 webhook outbox"); goals whose contenders did not run are not measured`)
	flag.Parse()
	workerRepeatsOverride = *workerRepeats
	workerContenders = nil
	if *workerOnly != "" {
		workerContenders = strings.Split(*workerOnly, ",")
	}
	pollServeEnv = nil
	if *serveEnv != "" {
		pollServeEnv = strings.Split(*serveEnv, ",")
	}
	if *serveGOGC != "" {
		pollServeEnv = append(pollServeEnv, "GOGC="+*serveGOGC)
	}
	nondurableSet := false
	flag.Visit(func(f *flag.Flag) { nondurableSet = nondurableSet || f.Name == "nondurable" })
	if *quick && !nondurableSet {
		*nondurable = false // quick mode stays under two minutes
	}
	if !*durable && !*nondurable {
		fmt.Fprintln(os.Stderr, "-durable=false and -nondurable=false leave scenario 2 no server")
		os.Exit(2)
	}
	os.Exit(run(*quick, *out, *only, *workerJobs, *deliveryPace, *probe, *diagnose, *observe, *durable, *nondurable, *webhooks, *webhookNice, *webhookIdle, *webhookPause))
}

func run(quick bool, out, only string, workerJobs, deliveryPace int, probe, diagnose, observe, durable, nondurable, webhooks bool, webhookNice string, webhookIdle, webhookPause bool) int {
	limit := 90 * time.Minute // make bench takes about 50
	if quick {
		limit = 8 * time.Minute // with -only polls: the poll goals alone take about 2 minutes with the Node peer
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	want := func(name string) bool {
		return only == "" || strings.Contains(","+only+",", ","+name+",")
	}
	began := time.Now()
	res := &Results{StartedAt: began.UTC(), Mode: "full", Repeats: 3}
	statusO := statusOpts{db: "status_big", jobs: 1_000_000, users: 10_000, conc: []int{16, 64, 256},
		dur: 10 * time.Second, repeats: 3, raw: true, dbMaxConns: 20}
	workerO := workerOpts{sizes: []int{300_000, 1_000_000}, repeats: 3, concurrency: riverMaxWorkers, concurrency2: riverMaxWorkers / 2, timeout: 10 * time.Minute, probeJobs: 100_000}
	deliveryO := deliveryOpts{db: "delivery", waiters: 10_000, batch: 100, pace: 200, dbMaxConns: 20}
	pickupO := pickupOpts{rates: []int{500, 2000}, dur: 10 * time.Second, repeats: 3, concurrency: 100}
	limitsO := limitsOpts{jobs: 30_000, users: 10_000, procs: 3, conc: 64, dur: 5 * time.Second, pairs: 5, dbMaxConns: 20}
	manyO := manyUsersOpts{jobs: 300_000, users: 1000, concurrency: riverMaxWorkers, pairs: 3, timeout: 10 * time.Minute}
	historyO := historyOpts{history: 5_000_000, jobs: 300_000, pollJobs: 100_000, pollUsers: 1000, pollDur: 10 * time.Second,
		repeats: 3, concurrency: riverMaxWorkers, timeout: 10 * time.Minute, dbMaxConns: 20}
	if quick {
		res.Mode, res.Repeats = "quick", 2
		statusO.jobs, statusO.users, statusO.conc, statusO.dur, statusO.repeats = 100_000, 1_000, []int{64}, 2*time.Second, 2
		workerO.sizes, workerO.repeats, workerO.timeout, workerO.probeJobs = []int{50_000}, 2, 60*time.Second, 50_000
		pickupO.rates, pickupO.dur, pickupO.repeats = []int{500}, 3*time.Second, 2
		deliveryO.waiters = 2_000
		limitsO.jobs, limitsO.users, limitsO.dur, limitsO.pairs = 2_000, 1_000, time.Second, 2
		manyO.jobs, manyO.pairs, manyO.timeout = 20_000, 1, 60*time.Second
		historyO.history, historyO.jobs, historyO.pollJobs, historyO.pollUsers = 200_000, 20_000, 5_000, 100
		historyO.pollDur, historyO.repeats, historyO.timeout = 2*time.Second, 1, 60*time.Second
	}
	deliveryO.pace = max(1, deliveryPace)
	if workerJobs > 0 {
		workerO.sizes = []int{workerJobs}
	}
	workerO.diagnose = diagnose
	workerO.observe = observe
	workerO.webhooks, workerO.webhookNice, workerO.webhookIdle, workerO.webhookPause = webhooks, webhookNice, webhookIdle, webhookPause
	// Quick mode leaves the observed pickup runs out to stay under two
	// minutes; the observed burn-down is in both.
	pickupO.observe = observe && !quick
	if probe {
		workerO.probe = []int{100, 250, 500, 1000, 2000}
	}
	pollsO := pollGoalsOpts{db: "polls", jobs: 1_000_000, users: 10_000, finishedConc: []int{1, 4, 16, 64},
		unfinishedConc: []int{1, 16, 64, 256}, dur: 5 * time.Second, repeats: 3, dbMaxConns: 20, pgbenchScale: 10}
	if quick {
		pollsO.jobs, pollsO.users, pollsO.dur, pollsO.repeats, pollsO.pgbenchScale = 100_000, 1_000, 2*time.Second, 2, 1
	}
	growthO := statusO
	growthO.db, growthO.jobs, growthO.conc, growthO.raw = "status_small", 10_000, []int{64}, false

	fail := func(what string, err error) {
		msg := fmt.Sprintf("%s: %v", what, err)
		logf("ERROR %s", msg)
		res.Errors = append(res.Errors, msg)
	}

	e, err := setupEnv(ctx)
	if e != nil {
		defer e.close()
	}
	if err != nil {
		fail("setup", err)
		return finish(res, out, began)
	}
	res.Machine, res.PGSettings = e.machine, e.pgConf
	res.PGNote = "one throwaway cluster (pgserver.StartBinaries) for every contender, started with fsync=off, " +
		"synchronous_commit=off, full_page_writes=off, max_connections=200: not durable, same for all"
	logf("PostgreSQL: %s", e.machine.Postgres)
	logf("PostgreSQL settings: %v (%s)", e.pgConf, "fsync=off etc.: not durable, the same server for every contender")
	// Scenario 2 and the SQL ceiling run on the durable server (the
	// headline) and/or the non-durable one.
	var burnEnvs []*env
	if durable && (want("worker") || want("history") || only != "" && want("ceiling")) {
		de, err := e.durableEnv(ctx)
		if de != nil {
			defer de.close()
		}
		if err != nil {
			fail("durable setup", err)
			return finish(res, out, began)
		}
		res.PGSettingsDurable = de.pgConf
		res.PGNote += "; scenario 2 and the SQL ceiling also (first, the headline) on a second throwaway cluster with " +
			"PostgreSQL's defaults fsync=on, synchronous_commit=on, full_page_writes=on (checked with SHOW), max_connections=200: durable"
		logf("durable PostgreSQL settings: %v", de.pgConf)
		burnEnvs = append(burnEnvs, de)
	}
	if nondurable {
		burnEnvs = append(burnEnvs, e)
	}
	logf("machine: %d CPUs, %d MiB, %s", e.machine.NProc, e.machine.MemoryMiB, e.machine.GoVersion)

	iss, err := newTokenIssuer()
	if err != nil {
		fail("token issuer", err)
		return finish(res, out, began)
	}
	defer iss.srv.Close()

	if want("status") || want("growth") {
		logf("scenario 1: status reads (%d jobs, %d users)", statusO.jobs, statusO.users)
		if res.Status, err = runStatusScenario(ctx, e, iss, statusO); err != nil {
			fail("status reads", err)
			res.Status = nil
		}
	}
	// Quick mode (CI's smoke run, under 2 minutes) runs the poll goals
	// (about 2 minutes with the Node peer) only when -only names them; make bench runs them.
	if (want("status") || want("polls")) && (!quick || only != "" && want("polls")) {
		logf("scenario 1b: the poll path at its limits (%d jobs, %d users, net/http client)", pollsO.jobs, pollsO.users)
		if res.Polls, err = runPollGoals(ctx, e, iss, pollsO); err != nil {
			fail("poll goals", err)
			res.Polls = nil
		}
	}
	if want("worker") {
		for j, se := range burnEnvs {
			for i, n := range workerO.sizes {
				o := workerO
				o.jobs, o.db = n, fmt.Sprintf("worker_%d", i)
				if i > 0 || j > 0 {
					o.probe = nil // once is enough
				}
				logf("scenario 2: worker burn-down of %d jobs, jobsd vs River, %s server", n, se.label)
				wr, err := runWorkerScenario(ctx, se, o)
				if err != nil {
					fail("worker throughput ("+se.label+")", err)
					continue
				}
				if wr.AuditFailures > 0 {
					fail("worker throughput ("+se.label+")", fmt.Errorf("%d burn-down audits failed (see runs)", wr.AuditFailures))
				}
				res.Workers = append(res.Workers, wr)
			}
		}
	}
	if want("history") {
		he := e
		if len(burnEnvs) > 0 {
			he = burnEnvs[0] // the durable server when there is one
		}
		logf("scenario 9: history: burn-down of %d jobs and polls of %d unfinished jobs on an empty table vs one with %d finished jobs, %s server",
			historyO.jobs, historyO.pollJobs, historyO.history, he.label)
		if res.History, err = runHistoryScenario(ctx, he, iss, historyO); err != nil {
			fail("history", err)
			res.History = nil
		} else if res.History.AuditFailures > 0 {
			fail("history", fmt.Errorf("%d burn-down audits failed (see runs)", res.History.AuditFailures))
		}
	}
	if want("manyusers") {
		logf("scenario 8: many users: burn-down of %d jobs of 1 user vs %d users, jobsd x1 (concurrency %d), alternating", manyO.jobs, manyO.users, manyO.concurrency)
		if res.ManyUsers, err = runManyUsersScenario(ctx, e, manyO); err != nil {
			fail("many users", err)
			res.ManyUsers = nil
		} else if res.ManyUsers.AuditFailures > 0 {
			fail("many users", fmt.Errorf("%d burn-down audits failed (see runs)", res.ManyUsers.AuditFailures))
		}
	}
	if only != "" && want("ceiling") { // by request only: it informs design, it is no goal
		for _, se := range burnEnvs {
			logf("SQL-only ceiling: claim and complete %d jobs per candidate schema, no handlers, %s server", workerO.sizes[0], se.label)
			c, err := runCeiling(ctx, se, workerO.sizes[0], res.Repeats)
			res.Ceiling = append(res.Ceiling, c...)
			if err != nil {
				fail("sql ceiling ("+se.label+")", err)
			}
		}
	}
	if want("pickup") {
		logf("scenario 3: pickup latency at %v jobs/s", pickupO.rates)
		if res.Pickup, err = runPickupScenario(ctx, e, pickupO); err != nil {
			fail("pickup latency", err)
			res.Pickup = nil
		}
	}
	if want("growth") && res.Status != nil {
		logf("scenario 4: growth (%d jobs vs %d, paired in each repeat)", growthO.jobs, res.Status.Jobs)
		if res.Growth, err = runGrowthScenario(ctx, e, iss, res.Status, growthO); err != nil {
			fail("growth", err)
			res.Growth = nil
		}
	}
	if want("limits") {
		logf("scenario 7: deployment-wide limits: status reads through %d API processes, limits off vs on, alternating", limitsO.procs)
		if res.Limits, err = runLimitsScenario(ctx, e, iss, limitsO); err != nil {
			fail("limits", err)
			res.Limits = nil
		} else if l := res.Limits; l.failed() > 0 {
			fail("limits", fmt.Errorf("the run is invalid: %d requests failed (%d of them 429s) with the limits set to refuse nothing",
				l.failed(), l.TooMany))
		}
	}

	if want("fairness") {
		fo := fairnessOpts{backlog: 10_000, jobTime: 2 * time.Second, concurrency: 8, probes: 5}
		if quick {
			fo.probes = 3
		}
		logf("scenario 6: fairness: user A's %d jobs of %s, then user B's jobs one at a time, 1 worker at concurrency %d", fo.backlog, fo.jobTime, fo.concurrency)
		if res.Fairness, err = runFairnessScenario(ctx, e, fo); err != nil {
			fail("fairness", err)
			res.Fairness = nil
		}
	}
	if want("delivery") {
		burstO := deliveryO
		burstO.db, burstO.pace = "delivery_burst", 0
		for _, run := range []struct {
			o   deliveryOpts
			dst **DeliveryResult
		}{{deliveryO, &res.Delivery}, {burstO, &res.DeliveryBurst}} {
			how := fmt.Sprintf("%d jobs/s, one per UPDATE", run.o.pace)
			if run.o.pace == 0 {
				how = fmt.Sprintf("a burst, %d ids per UPDATE", run.o.batch)
			}
			logf("scenario 5: delivery to %d waiters (half long poll, half SSE), jobs completed at %s", run.o.waiters, how)
			d, err := runDeliveryScenario(ctx, e, iss, run.o)
			if err != nil {
				fail("delivery", err)
				continue
			}
			*run.dst = d
			if d.LongPoll.Missing+d.SSE.Missing > 0 {
				fail("delivery", fmt.Errorf("%d long-poll and %d SSE waiters never got the COMPLETED job (first error: %s)",
					d.LongPoll.Missing, d.SSE.Missing, d.FirstError))
			}
		}
	}
	res.Goals = goals(res)
	return finish(res, out, began)
}

func goals(r *Results) []Goal {
	var gs []Goal
	if r.Status != nil {
		v := r.Status.RatioAt64.Median
		gs = append(gs, Goal{Name: "status reads vs raw PK reads at c=64", Target: ">= 0.80x", Measured: v, Met: v >= 0.8})
	}
	if r.Polls != nil {
		gs = append(gs, r.Polls.goals()...)
	}
	// ran marks a goal not measured when its contenders did not run
	// (-worker-contenders).
	ran := func(g Goal, s Spread) Goal {
		if len(s.Values) == 0 {
			g.NotMeasured = "its contenders did not run (-worker-contenders)"
		}
		return g
	}
	for _, w := range r.Workers {
		n := human(w.Jobs) + " jobs, " + w.Server
		v := w.Jobsd1OverRiver
		gs = append(gs, ran(Goal{Name: "worker throughput, jobsd x1 vs River x1, " + n, Target: ">= 1.50x median",
			Measured: v.Median, Met: v.Median >= 1.5}, v),
			ran(Goal{Name: "worker throughput, jobsd x1 vs River x1, " + n + ", worst repeat", Target: ">= 1.30x",
				Measured: v.Min, Met: v.Min >= 1.3}, v),
			ran(Goal{Name: "worker throughput, jobsd x2 vs jobsd x1, " + n, Target: ">= 0.95x median",
				Measured: w.Jobsd2OverJobsd1.Median, Met: w.Jobsd2OverJobsd1.Median >= 0.95}, w.Jobsd2OverJobsd1))
		if o := w.SampledOverJobsd1; len(o.Values) > 0 {
			gs = append(gs, Goal{Name: "worker throughput, metrics on and 1% of traces (README) vs both off, " + n, Target: ">= 0.95x median",
				Measured: o.Median, Met: o.Median >= 0.95})
		}
		if o := w.WebhooksOverJobsd1; len(o.Values) > 0 {
			gs = append(gs, Goal{Name: "worker throughput, one webhook endpoint per user (delivered meanwhile) vs none, " + n, Target: ">= 0.95x median",
				Measured: o.Median, Met: o.Median >= 0.95})
		}
		if o := w.ObservedOverRiver; len(o.Values) > 0 {
			gs = append(gs, Goal{Name: "worker throughput, jobsd x1 with metrics and tracing on vs River x1, " + n, Target: ">= 1.50x median",
				Measured: o.Median, Met: o.Median >= 1.5})
		}
		gs = append(gs, ran(Goal{Name: "CPU per job (PostgreSQL + worker), jobsd x1 ÷ River x1, " + n, Target: "<= 0.67x median",
			Measured: w.CPUPerJobOverRiver.Median, Met: w.CPUPerJobOverRiver.Median <= 0.67}, w.CPUPerJobOverRiver),
			ran(Goal{Name: "WAL bytes per job, jobsd x1 ÷ River x1, " + n, Target: "<= 0.67x median",
				Measured: w.WALPerJobOverRiver.Median, Met: w.WALPerJobOverRiver.Median <= 0.67}, w.WALPerJobOverRiver))
	}
	if r.Pickup != nil {
		if s, ok := r.Pickup.P50ms["500/s"]; ok {
			gs = append(gs, Goal{Name: "pickup p50 at 500 jobs/s", Target: "<= 5 ms", Measured: s.Median, Met: s.Median <= 5})
			p := r.Pickup.P99ms["500/s"]
			gs = append(gs, Goal{Name: "pickup p99 at 500 jobs/s", Target: "<= 25 ms", Measured: p.Median, Met: p.Median <= 25})
		}
		if s, ok := r.Pickup.P50ms[observedKey(500)]; ok {
			gs = append(gs, Goal{Name: "pickup p50 at 500 jobs/s, metrics and tracing on", Target: "<= 5 ms", Measured: s.Median, Met: s.Median <= 5})
			p := r.Pickup.P99ms[observedKey(500)]
			gs = append(gs, Goal{Name: "pickup p99 at 500 jobs/s, metrics and tracing on", Target: "<= 25 ms", Measured: p.Median, Met: p.Median <= 25})
		}
	}
	if r.Growth != nil {
		v := r.Growth.P99BigOverSmall.Median
		gs = append(gs, Goal{Name: fmt.Sprintf("status p99 at %s jobs vs 10k", human(r.Growth.BigJobs)), Target: "<= 1.50x",
			Measured: v, Met: v <= 1.5, Note: map[bool]string{true: "quick mode: 100k, not 1M"}[r.Mode == "quick"]})
	}
	if f := r.Fairness; f != nil {
		gs = append(gs, Goal{Name: fmt.Sprintf("fairness: user B's job starts behind user A's %s queued %gs jobs", human(f.BacklogJobs), f.JobSeconds),
			Target: "<= 5000 ms", Measured: f.MaxMs, Met: f.MaxMs <= 5000,
			Note: fmt.Sprintf("worst of %d probes; served strictly in order it would wait %.0f s", len(f.StartMs), f.FIFOSeconds)})
	}
	if l := r.Limits; l != nil {
		v := l.OnOverOff.Median
		note := fmt.Sprintf("each of %d API processes counted %d; 0 429s", l.APIProcesses, l.APIProcesses)
		if l.failed() > 0 {
			note = fmt.Sprintf("INVALID: %d requests failed (%d 429s)", l.failed(), l.TooMany)
		}
		gs = append(gs, Goal{Name: "deployment-wide limits cost <= 5% of status-read throughput", Target: ">= 0.95x on ÷ off",
			Measured: v, Met: v >= 0.95 && l.failed() == 0, Note: note})
	}
	if m := r.ManyUsers; m != nil {
		v := m.ManyOverOne.Median
		gs = append(gs, Goal{Name: fmt.Sprintf("burn-down with %s users >= 0.9x one user, %s jobs", human(m.Users), human(m.Jobs)), Target: ">= 0.90x",
			Measured: v, Met: v >= 0.9 && m.AuditFailures == 0})
	}
	if h := r.History; h != nil {
		note := map[bool]string{true: "quick mode: " + human(h.HistoryJobs) + " finished jobs, not 5M"}[r.Mode == "quick"]
		gs = append(gs, Goal{Name: fmt.Sprintf("burn-down of %s jobs beside %s finished jobs ÷ on an empty table, %s", human(h.Jobs), human(h.HistoryJobs), h.Server),
			Target: ">= 0.90x", Measured: h.BurnDownOverEmpty.Median, Met: h.BurnDownOverEmpty.Median >= 0.9 && h.AuditFailures == 0, Note: note},
			Goal{Name: fmt.Sprintf("status polls beside %s finished jobs ÷ on an empty table", human(h.HistoryJobs)),
				Target: ">= 0.90x", Measured: h.PollsOverEmpty.Median, Met: h.PollsOverEmpty.Median >= 0.9, Note: note})
	}
	if d := r.Delivery; d != nil {
		note := fmt.Sprintf("%d missing", d.LongPoll.Missing+d.SSE.Missing)
		if d.Waiters < 10_000 {
			note += fmt.Sprintf("; %s waiters, not 10k", human(d.Waiters))
		}
		for _, k := range []struct {
			name string
			st   DeliveryStats
		}{{"long poll", d.LongPoll}, {"SSE", d.SSE}} {
			gs = append(gs, Goal{Name: fmt.Sprintf("delivery p99, %s, %s waiters, %d jobs/s", k.name, human(d.Waiters), d.Pace), Target: "<= 50 ms",
				Measured: k.st.P99ms, Met: k.st.P99ms <= 50 && k.st.Missing == 0 && k.st.Received > 0, Note: note})
		}
		// The API's connection budget (docs/deploying.md): its pool, its
		// status reads' own connections, and the hub's LISTEN.
		lim := d.APIDBConns + d.APIReadBatches + 1
		gs = append(gs, Goal{Name: fmt.Sprintf("DB connections while %s wait", human(d.Waiters)), Target: fmt.Sprintf("<= %d (pool + status reads + LISTEN)", lim),
			Measured: float64(d.DBConnsWaiting), Met: d.DBConnsWaiting <= lim, Note: fmt.Sprintf("peak during delivery %d", d.DBConnsPeak)})
	}
	for i := range gs {
		if math.IsNaN(gs[i].Measured) {
			gs[i].Met, gs[i].Measured = false, -1
		}
	}
	return gs
}

func human(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

func finish(res *Results, out string, began time.Time) int {
	res.Seconds = time.Since(began).Seconds()
	printReport(os.Stdout, res)
	sanitize(res)
	b, err := json.MarshalIndent(res, "", "  ")
	if err == nil {
		if err = os.MkdirAll(filepath.Dir(out), 0o755); err == nil {
			err = os.WriteFile(out, append(b, '\n'), 0o644)
		}
	}
	if err != nil {
		logf("ERROR writing %s: %v", out, err)
		return 1
	}
	logf("wrote %s (%.0fs total)", out, res.Seconds)
	if len(res.Errors) > 0 {
		return 1
	}
	return 0
}

// sanitize replaces NaN (no data) by -1 so that the JSON encodes.
func sanitize(r *Results) {
	fixL := func(ls []LoadSummary) {
		for i := range ls {
			ls[i].PerSec, ls[i].P50ms, ls[i].P99ms, ls[i].P999ms = cleanSpread(ls[i].PerSec), cleanSpread(ls[i].P50ms), cleanSpread(ls[i].P99ms), cleanSpread(ls[i].P999ms)
		}
	}
	fixS := func(s *StatusResult) {
		if s == nil {
			return
		}
		c := []LoadSummary{s.Cold}
		fixL(c)
		s.Cold = c[0]
		fixL(s.Warm)
		extra := []LoadSummary{s.WarmNetHTTP, s.Warm304, s.WarmFinished}
		fixL(extra)
		s.WarmNetHTTP, s.Warm304, s.WarmFinished = extra[0], extra[1], extra[2]
		fixL(s.Raw)
		s.RatioAt64 = cleanSpread(s.RatioAt64)
	}
	fixS(r.Status)
	if r.Polls != nil {
		r.Polls.sanitize()
	}
	for i, g := range r.Goals {
		if math.IsNaN(g.Measured) || math.IsInf(g.Measured, 0) {
			r.Goals[i].Measured = -1
		}
	}
	if r.Growth != nil {
		g := []LoadSummary{r.Growth.Small, r.Growth.Big}
		fixL(g)
		r.Growth.Small, r.Growth.Big = g[0], g[1]
		r.Growth.P99BigOverSmall, r.Growth.RPSBigOverSmall = cleanSpread(r.Growth.P99BigOverSmall), cleanSpread(r.Growth.RPSBigOverSmall)
	}
	for _, w := range r.Workers {
		for k, v := range w.JobsPerSec {
			w.JobsPerSec[k] = cleanSpread(v)
		}
		w.Jobsd1OverRiver, w.Jobsd2OverRiver = cleanSpread(w.Jobsd1OverRiver), cleanSpread(w.Jobsd2OverRiver)
		w.Jobsd2OverJobsd1 = cleanSpread(w.Jobsd2OverJobsd1)
		w.ObservedOverJobsd1, w.ObservedOverRiver = cleanSpread(w.ObservedOverJobsd1), cleanSpread(w.ObservedOverRiver)
		w.SampledOverJobsd1, w.TracedAttemptCPUus = cleanSpread(w.SampledOverJobsd1), cleanSpread(w.TracedAttemptCPUus)
		w.WebhooksOverJobsd1 = cleanSpread(w.WebhooksOverJobsd1)
		w.WebhooksOutboxOverJobsd1 = cleanSpread(w.WebhooksOutboxOverJobsd1)
		for k, v := range w.WorkPerJob {
			w.WorkPerJob[k] = v.clean()
		}
		w.CPUPerJobOverRiver, w.WALPerJobOverRiver = cleanSpread(w.CPUPerJobOverRiver), cleanSpread(w.WALPerJobOverRiver)
	}
	if l := r.Limits; l != nil {
		ls := []LoadSummary{l.Off, l.On}
		fixL(ls)
		l.Off, l.On, l.OnOverOff = ls[0], ls[1], cleanSpread(l.OnOverOff)
	}
	if m := r.ManyUsers; m != nil {
		for k, v := range m.JobsPerSec {
			m.JobsPerSec[k] = cleanSpread(v)
		}
		m.ManyOverOne = cleanSpread(m.ManyOverOne)
	}
	if h := r.History; h != nil {
		h.BurnDownOverEmpty, h.PollsOverEmpty = cleanSpread(h.BurnDownOverEmpty), cleanSpread(h.PollsOverEmpty)
	}
	if r.Pickup != nil {
		for k := range r.Pickup.P50ms {
			r.Pickup.P50ms[k], r.Pickup.P99ms[k] = cleanSpread(r.Pickup.P50ms[k]), cleanSpread(r.Pickup.P99ms[k])
			r.Pickup.DBP50ms[k], r.Pickup.DBP99ms[k] = cleanSpread(r.Pickup.DBP50ms[k]), cleanSpread(r.Pickup.DBP99ms[k])
		}
	}
}

func sp(s Spread, format string) string {
	if math.IsNaN(s.Median) {
		return "n/a"
	}
	return fmt.Sprintf(format+" ("+format+"–"+format+")", s.Median, s.Min, s.Max)
}

func printReport(f *os.File, r *Results) {
	w := tabwriter.NewWriter(f, 2, 4, 2, ' ', 0)
	fmt.Fprintf(w, "\njobsd benchmark, %s mode, %d repeats: median (min–max)\n", r.Mode, r.Repeats)
	fmt.Fprintf(w, "machine: %d CPUs (%s), %d MiB, %s; %s\n", r.Machine.NProc, r.Machine.CPUModel, r.Machine.MemoryMiB, r.Machine.GoVersion, firstWords(r.Machine.Postgres, 2))
	fmt.Fprintf(w, "jobsd built from %s\n", r.Machine.JobsdCommit)
	fmt.Fprintf(w, "postgres: %s\n", r.PGNote)
	fmt.Fprintf(w, "load generator, jobsd and PostgreSQL share the same CPUs.\n\n")
	if s := r.Status; s != nil {
		fmt.Fprintf(w, "1. status reads: %s jobs, %s users, API pool %d conns; heap %s, indexes %s\n", human(s.Jobs), human(s.Users), s.APIDBConns, mib(s.Sizes.HeapBytes), mib(s.Sizes.IndexesBytes))
		fmt.Fprintf(w, "\tpass\tc\treq/s\tp50 ms\tp99 ms\tp99.9 ms\terrors\n")
		row := func(name string, l LoadSummary) {
			fmt.Fprintf(w, "\t%s\t%d\t%s\t%s\t%s\t%s\t%d/%d\n", name, l.Concurrency, sp(l.PerSec, "%.0f"), sp(l.P50ms, "%.2f"), sp(l.P99ms, "%.2f"), sp(l.P999ms, "%.2f"), l.Errors, l.Requests)
		}
		row("API cold tokens", s.Cold)
		for _, l := range s.Warm {
			row("API warm", l)
		}
		if s.Warm304.Requests > 0 {
			row("API warm, 304 (If-None-Match)", s.Warm304)
		}
		if s.WarmFinished.Requests > 0 {
			row("API warm, finished jobs only", s.WarmFinished)
		}
		if s.WarmNetHTTP.Requests > 0 {
			row("API warm, net/http client", s.WarmNetHTTP)
		}
		for _, l := range s.Raw {
			row(fmt.Sprintf("raw pgx (pool %d)", s.RawPoolSize[l.Concurrency]), l)
		}
		fmt.Fprintf(w, "\tHEADLINE API ÷ raw DB at c=64\t\t%s\n\n", sp(s.RatioAt64, "%.3f"))
	}
	if r.Polls != nil {
		r.Polls.print(w)
	}
	for _, wr := range r.Workers {
		fmt.Fprintf(w, "2. worker burn-down of %s no-op jobs on the %s server (%s) (jobsd concurrency %d; x2 = 2 processes of %d; River %s)\n",
			human(wr.Jobs), strings.ToUpper(wr.Server), durability(wr.PGSettings), wr.JobsdConcurrency, wr.JobsdConcurrency2, wr.RiverConfig)
		fmt.Fprintf(w, "\t\t\tjobs/s\tPG CPU µs/job\tworker CPU µs/job\tWAL B/job\tcommits/job\taudit\n")
		for _, k := range []string{"jobsd x1", "jobsd x2", "river x1", "jobsd x1 observed"} {
			if _, ok := wr.Runs[k]; !ok {
				continue
			}
			ws := wr.WorkPerJob[k]
			fmt.Fprintf(w, "\t%s\t\t%s\t%s\t%s\t%s\t%s\t%s\n", k, sp(wr.JobsPerSec[k], "%.0f"),
				sp(ws.PGCPUus, "%.1f"), sp(ws.WorkerCPUus, "%.1f"), sp(ws.WALBytes, "%.0f"), sp(ws.Commits, "%.3f"), auditOf(wr.Runs[k]))
		}
		for _, c := range []int{100, 250, 500, 1000, 2000} {
			if v, ok := wr.ConcurrencyProbe[c]; ok {
				fmt.Fprintf(w, "\tprobe jobsd x1 concurrency %d\tjobs/s\t%.0f\n", c, v)
			}
		}
		for k, v := range wr.Diagnostics {
			fmt.Fprintf(w, "\tdiagnostic: %s\t\t%.0f\n", k, v)
		}
		fmt.Fprintf(w, "\tHEADLINE jobsd x1 ÷ River x1\t\t%s\n", sp(wr.Jobsd1OverRiver, "%.3f"))
		fmt.Fprintf(w, "\t(jobsd x2 ÷ River x1)\t\t%s\n", sp(wr.Jobsd2OverRiver, "%.3f"))
		fmt.Fprintf(w, "\tjobsd x2 ÷ jobsd x1\t\t%s\n", sp(wr.Jobsd2OverJobsd1, "%.3f"))
		if len(wr.ObservedOverJobsd1.Values) > 0 {
			fmt.Fprintf(w, "\tjobsd x1 with metrics and tracing on ÷ jobsd x1\t\t%s\n", sp(wr.ObservedOverJobsd1, "%.3f"))
			fmt.Fprintf(w, "\tjobsd x1 with metrics and tracing on ÷ River x1\t\t%s\n", sp(wr.ObservedOverRiver, "%.3f"))
			fmt.Fprintf(w, "\tjobsd x1 with metrics on, 1%% of traces ÷ jobsd x1\t\t%s\n", sp(wr.SampledOverJobsd1, "%.3f"))
			fmt.Fprintf(w, "\tworker CPU of a traced attempt (observed - x1), µs\t\t%s\n", sp(wr.TracedAttemptCPUus, "%.1f"))
		}
		if len(wr.WebhooksOverJobsd1.Values) > 0 {
			fmt.Fprintf(w, "\tjobsd x1 with one webhook endpoint per user ÷ jobsd x1 (a jobsd deliver delivering meanwhile)\t\t%s\n", sp(wr.WebhooksOverJobsd1, "%.3f"))
			fmt.Fprintf(w, "\tjobsd x1 with one webhook endpoint per user ÷ jobsd x1 (outbox only, nothing sending)\t\t%s\n", sp(wr.WebhooksOutboxOverJobsd1, "%.3f"))
		}
		fmt.Fprintf(w, "\tCPU per job (PG + worker), jobsd x1 ÷ River x1\t\t%s\n", sp(wr.CPUPerJobOverRiver, "%.3f"))
		fmt.Fprintf(w, "\tWAL per job, jobsd x1 ÷ River x1\t\t%s\n", sp(wr.WALPerJobOverRiver, "%.3f"))
		fmt.Fprintf(w, "\t(worker CPU: the jobsd worker processes; River's client runs in the bench process, whose CPU is counted, its polling included)\n")
		fmt.Fprintln(w)
	}
	printCeiling(w, r.Ceiling)
	if m := r.ManyUsers; m != nil {
		fmt.Fprintf(w, "8. many users: burn-down of %s no-op jobs owned by 1 user vs by %s users in turn, jobsd x1 (concurrency %d), alternating\n",
			human(m.Jobs), human(m.Users), m.Concurrency)
		for _, k := range []string{"1 user", fmt.Sprintf("%d users", m.Users)} {
			fmt.Fprintf(w, "\t%s\tjobs/s\t%s\taudit %s\n", k, sp(m.JobsPerSec[k], "%.0f"), auditOf(m.Runs[k]))
		}
		fmt.Fprintf(w, "\tHEADLINE %s users ÷ 1 user\t\t%s\n\n", human(m.Users), sp(m.ManyOverOne, "%.3f"))
	}
	if p := r.Pickup; p != nil {
		fmt.Fprintf(w, "3. pickup latency, 1 jobsd worker (concurrency %d), paced inserts for %.0fs\n", p.Concurrency, p.Seconds)
		fmt.Fprintf(w, "\toffered\tachieved\tp50 ms\tp99 ms\tp50 ms (DB clock)\tp99 ms (DB clock)\n")
		for _, k := range []string{"500/s", "2000/s"} {
			rs, ok := p.Runs[k]
			if !ok {
				continue
			}
			var ach []float64
			for _, x := range rs {
				ach = append(ach, x.AchievedRate)
			}
			fmt.Fprintf(w, "\t%s\t%s\t%s\t%s\t%s\t%s\n", k, sp(spread(ach), "%.0f"), sp(p.P50ms[k], "%.2f"), sp(p.P99ms[k], "%.2f"), sp(p.DBP50ms[k], "%.2f"), sp(p.DBP99ms[k], "%.2f"))
		}
		fmt.Fprintf(w, "\tcaveat: %s\n\n", p.Caveat)
	}
	if g := r.Growth; g != nil {
		fmt.Fprintf(w, "4. growth: status reads at c=64, %s vs %s jobs, both tables measured back to back in each repeat\n", human(g.SmallJobs), human(g.BigJobs))
		fmt.Fprintf(w, "\ttable\trows\theap\tindexes\treq/s\tp99 ms\n")
		fmt.Fprintf(w, "\tbig\t%d\t%s\t%s\t%s\t%s\n", g.BigSizes.Rows, mib(g.BigSizes.HeapBytes), mib(g.BigSizes.IndexesBytes), sp(g.Big.PerSec, "%.0f"), sp(g.Big.P99ms, "%.2f"))
		fmt.Fprintf(w, "\tsmall\t%d\t%s\t%s\t%s\t%s\n", g.SmallSizes.Rows, mib(g.SmallSizes.HeapBytes), mib(g.SmallSizes.IndexesBytes), sp(g.Small.PerSec, "%.0f"), sp(g.Small.P99ms, "%.2f"))
		fmt.Fprintf(w, "\tHEADLINE p99 big ÷ small\t%s\treq/s big ÷ small\t%s\n\n", sp(g.P99BigOverSmall, "%.3f"), sp(g.RPSBigOverSmall, "%.3f"))
	}
	if h := r.History; h != nil {
		printHistory(w, h)
	}
	if l := r.Limits; l != nil {
		fmt.Fprintf(w, "7. deployment-wide limits: status reads at c=%d through %d jobsd serve processes, each counting %d; %s jobs, %s users; limits off vs on (set to refuse nothing), alternating passes of %gs\n",
			l.Concurrency, l.APIProcesses, l.APIProcesses, human(l.Jobs), human(l.Users), l.PassSeconds)
		fmt.Fprintf(w, "\tlimits\treq/s\tp50 ms\tp99 ms\tp99.9 ms\terrors\n")
		for _, k := range []struct {
			name string
			l    LoadSummary
		}{{"off", l.Off}, {"on", l.On}} {
			fmt.Fprintf(w, "\t%s\t%s\t%s\t%s\t%s\t%d/%d\n", k.name, sp(k.l.PerSec, "%.0f"), sp(k.l.P50ms, "%.2f"), sp(k.l.P99ms, "%.2f"), sp(k.l.P999ms, "%.2f"), k.l.Errors, k.l.Requests)
		}
		fmt.Fprintf(w, "\t429s\t%d\n", l.TooMany)
		fmt.Fprintf(w, "\tHEADLINE on ÷ off\t%s\n\n", sp(l.OnOverOff, "%.3f"))
	}
	if f := r.Fairness; f != nil {
		fmt.Fprintf(w, "6. fairness: user A's %s queued jobs of %gs, 1 worker at concurrency %d; user B creates one job at a time\n", human(f.BacklogJobs), f.JobSeconds, f.Concurrency)
		fmt.Fprintf(w, "\tB's start latency ms (created -> started, DB clock)\t%v\tmax %.0f\n", roundAll(f.StartMs), f.MaxMs)
		fmt.Fprintf(w, "\tA's jobs started meanwhile\t%d\tstrict queue order would make B wait %.0f s\n\n", f.BacklogStarted, f.FIFOSeconds)
	}
	for _, d := range []*DeliveryResult{r.Delivery, r.DeliveryBurst} {
		if d == nil {
			continue
		}
		how := fmt.Sprintf("paced at %d jobs/s (%d deliveries/s), one per UPDATE", d.Pace, d.Pace*d.Waiters/max(1, d.Jobs))
		if d.Pace == 0 {
			how = fmt.Sprintf("in a burst, %d ids per UPDATE, back to back (a throughput figure, no goal)", d.BatchSize)
		}
		fmt.Fprintf(w, "5. delivery: %s waiters (half long poll, half SSE) on %d PENDING jobs of %d users; completed by SQL %s; one run\n",
			human(d.Waiters), d.Jobs, d.Users, how)
		fmt.Fprintf(w, "\tall parked in %.1fs; DB conns while waiting %d (%d not idle; API pool max %d + status reads %d), peak during delivery %d; API open fds %d; commits took %.3fs\n",
			d.ParkSeconds, d.DBConnsWaiting, d.DBConnsBusyWaiting, d.APIDBConns, d.APIReadBatches, d.DBConnsPeak, d.APIOpenFDs, d.CommitSeconds)
		fmt.Fprintf(w, "\twaiter\tn\treceived\tmissing\tp50 ms\tp99 ms\tmax ms\tnegative\n")
		for _, k := range []struct {
			name string
			st   DeliveryStats
		}{{"long poll", d.LongPoll}, {"SSE", d.SSE}} {
			fmt.Fprintf(w, "\t%s\t%d\t%d\t%d\t%.2f\t%.2f\t%.2f\t%d\n", k.name, k.st.Waiters, k.st.Received, k.st.Missing, k.st.P50ms, k.st.P99ms, k.st.Maxms, k.st.Negative)
		}
		if d.FirstError != "" {
			fmt.Fprintf(w, "\twaiter errors %d, first: %s\n", d.OpenErrors, d.FirstError)
		}
		fmt.Fprintf(w, "\tcaveat: %s\n\n", d.Caveat)
	}
	fmt.Fprintf(w, "goals\n")
	for _, g := range r.Goals {
		met := "NOT MET"
		if g.Met {
			met = "met"
		}
		if g.NotMeasured != "" {
			fmt.Fprintf(w, "\t%s\t%s\t\tNOT MEASURED\t%s\n", g.Name, g.Target, g.NotMeasured)
			continue
		}
		fmt.Fprintf(w, "\t%s\t%s\tmeasured %.3f\t%s\t%s\n", g.Name, g.Target, g.Measured, met, g.Note)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "ERROR: %s\n", e)
	}
	w.Flush()
}

// durability is "fsync=on, synchronous_commit=on, full_page_writes=on" or
// what else the server said.
func durability(conf map[string]string) string {
	var out []string
	for _, k := range []string{"fsync", "synchronous_commit", "full_page_writes"} {
		out = append(out, k+"="+conf[k])
	}
	return strings.Join(out, ", ")
}

// printCeiling prints the SQL ceiling's medians per server, candidate and
// loops (the JSON has every run).
func printCeiling(w io.Writer, runs []CeilingRun) {
	if len(runs) == 0 {
		return
	}
	type key struct {
		server, cand string
		loops        int
	}
	var order []key
	by := map[key][]CeilingRun{}
	for _, r := range runs {
		k := key{r.Server, r.Candidate, r.Loops}
		if _, ok := by[k]; !ok {
			order = append(order, k)
		}
		by[k] = append(by[k], r)
	}
	fmt.Fprintf(w, "SQL-only ceiling: claim and complete %s jobs, no handlers (medians; client CPU is the bench process's)\n", human(runs[0].Jobs))
	fmt.Fprintf(w, "\tserver\tcandidate\tloops\tjobs/s\tPG CPU µs/job\tclient CPU µs/job\tWAL B/job\tcommits/job\n")
	for _, k := range order {
		var rate, pg, cl, wal, c []float64
		for _, r := range by[k] {
			rate = append(rate, r.JobsPerSec)
			if r.Work != nil {
				pg, cl, wal, c = append(pg, r.Work.PGCPUus), append(cl, r.Work.WorkerCPUus), append(wal, r.Work.WALBytes), append(c, r.Work.Commits)
			}
		}
		fmt.Fprintf(w, "\t%s\t%s\t%d\t%.0f\t%.1f\t%.1f\t%.0f\t%.4f\n", k.server, k.cand, k.loops,
			spread(rate).Median, spread(pg).Median, spread(cl).Median, spread(wal).Median, spread(c).Median)
	}
	fmt.Fprintln(w)
}

// auditOf is "ok", or the first failed audit of the runs.
func auditOf(runs []BurnDown) string {
	for _, b := range runs {
		if !b.AuditOK {
			return "FAILED: " + b.Audit
		}
	}
	return "ok"
}

func firstWords(s string, n int) string {
	f := strings.Fields(s)
	if len(f) > n {
		f = f[:n]
	}
	return strings.Join(f, " ")
}

func roundAll(v []float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = math.Round(x)
	}
	return out
}
