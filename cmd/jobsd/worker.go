package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/jobtype"
	"github.com/jobsd/jobsd/metrics"
	"github.com/jobsd/jobsd/model"
	"github.com/jobsd/jobsd/store"
	"github.com/jobsd/jobsd/worker"
)

func runWorker(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	db, log, err := startProcess(fs, args)
	if err != nil {
		return err
	}
	if err := db.requireDirect(); err != nil {
		return err
	}
	flushTraces, err := startTracing(ctx, "jobsd-worker", log)
	if err != nil {
		return err
	}
	defer flushTraces()
	cfg, err := workerConfig(log)
	if err != nil {
		return err
	}
	if err := allowCrashMarkers(false); err != nil {
		return err
	}
	// Claims and outcomes are batched, so a few connections serve any
	// concurrency; handlers that read referenced jobs share the rest.
	st, err := db.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	reg := newProcessMetrics(st, log)
	cfg.Metrics = metrics.NewWorker(reg)
	w, err := newWorker(st, db.direct, cfg)
	if err != nil {
		return err
	}
	// /readyz: claiming (not starting up or draining) and the database answers.
	dbReady := storeReady(st)
	stopMetrics, err := startMetrics(metricsAddr(), reg, func() bool { return w.Ready() && dbReady() }, log)
	if err != nil {
		return err
	}
	defer stopMetrics()
	if _, set := os.LookupEnv("GOGC"); !set {
		// The worker's live heap is a few MiB, so the default GOGC=100
		// collects many times a second at a backlog; 400 trades a few MiB
		// for most of that CPU (about 8% more jobs/s in the benchmark).
		debug.SetGCPercent(400)
	}
	return w.Run(ctx)
}

// workerConfig reads the worker's concurrency and durations (zero: the
// worker's defaults).
func workerConfig(log *slog.Logger) (worker.Config, error) {
	cfg := worker.Config{Log: log}
	var err error
	if cfg.Concurrency, err = envInt("JOBS_WORKER_CONCURRENCY", job.DefaultConcurrency); err != nil {
		return cfg, err
	}
	for _, d := range []struct {
		name string
		dst  *time.Duration
	}{
		{"JOBS_WORKER_LEASE", &cfg.Lease},
		{"JOBS_WORKER_HEARTBEAT", &cfg.Heartbeat},
		{"JOBS_WORKER_RESCUE_EVERY", &cfg.RescueEvery},
		{"JOBS_WORKER_POLL", &cfg.PollEvery},
		{"JOBS_WORKER_BACKOFF_BASE", &cfg.BackoffBase},
		{"JOBS_WORKER_BACKOFF_MAX", &cfg.BackoffMax},
		{"JOBS_WORKER_JOB_TIMEOUT", &cfg.JobTimeout},
		{"JOBS_WORKER_SHUTDOWN_WAIT", &cfg.ShutdownWait},
		{"JOBS_WORKER_GRACE", &cfg.Grace},
	} {
		if *d.dst, err = envDuration(d.name, 0); err != nil {
			return cfg, err
		}
	}
	if cfg.MaxStuck, err = envInt("JOBS_WORKER_MAX_STUCK", 0); err != nil {
		return cfg, err
	}
	if cfg.UserConcurrency, err = envInt("JOBS_USER_CONCURRENCY", 0); err != nil {
		return cfg, err
	}
	if cfg.Retention, err = envRetention(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// allowCrashMarkers applies JOBS_WORKER_CRASH_MARKERS (default def): whether
// the local provider's [[simulate:crash]] markers may kill this process.
func allowCrashMarkers(def bool) error {
	on := def
	if v := os.Getenv("JOBS_WORKER_CRASH_MARKERS"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return usagef("JOBS_WORKER_CRASH_MARKERS=%q is not true or false", v)
		}
		on = b
	}
	model.AllowCrashMarkers(on)
	return nil
}

// observeParse counts a parse child killed for a limit.
func observeParse(m *metrics.Worker, ps jobtype.ParseStats) {
	switch {
	case ps.Limit == "time":
		m.ParseKilled(metrics.KillTimeout)
	case ps.Limit == "memory":
		m.ParseKilled(metrics.KillMemory)
	case ps.Limit == "output":
		m.ParseKilled(metrics.KillOutput)
	case ps.Limit == "cpu":
		m.ParseKilled(metrics.KillCPU)
	case errors.Is(ps.Err, context.Canceled):
		m.ParseKilled(metrics.KillCancelled)
	}
}

// newWorker wires the job types to the configured model provider; the
// worker LISTENs on listenURL, a direct connection.
func newWorker(st *store.Store, listenURL string, cfg worker.Config) (*worker.Worker, error) {
	provider, err := model.New(model.ConfigFromEnv(os.Getenv))
	if err != nil {
		return nil, usagef("%v", err)
	}
	cfg.Log.Info("model provider", "provider", provider.Name())
	cfg.Store = st
	cfg.ListenURL = listenURL
	parse, err := parseOptions(cfg.Log)
	if err != nil {
		return nil, err
	}
	parse.Observe = func(ps jobtype.ParseStats) { observeParse(cfg.Metrics, ps) }
	cfg.Handlers = jobtype.WorkerHandlers(st, provider, parse)
	cfg.Classify = jobtype.Classify
	return worker.New(cfg)
}
