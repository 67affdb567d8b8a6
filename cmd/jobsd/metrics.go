package main

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jobsd/jobsd/metrics"
	"github.com/jobsd/jobsd/store"
)

// metricsAddr is JOBS_METRICS_ADDR: where serve and worker serve /metrics,
// /healthz and /readyz. Empty (the default) turns the listener off.
func metricsAddr() string { return os.Getenv("JOBS_METRICS_ADDR") }

// newProcessMetrics is the registry of a serve or worker process: Go
// runtime and process collectors, the store's pool and the queue gauges.
// The API adds metrics.NewAPI and its hub's listener; the worker adds
// metrics.NewWorker (and its own listener's state, if it has one).
func newProcessMetrics(st *store.Store, log *slog.Logger) *prometheus.Registry {
	reg := metrics.NewRegistry()
	metrics.RegisterStore(reg, st, log)
	return reg
}

// startMetrics serves reg on addr (/metrics, and /healthz and /readyz with
// ready deciding the latter; nil: always ready) and logs where. An empty
// addr starts nothing, so callers need not check JOBS_METRICS_ADDR
// themselves; stop is then a no-op. The worker calls it as
//
//	reg := newProcessMetrics(st, log)
//	cfg.Metrics = metrics.NewWorker(reg)
//	stop, err := startMetrics(metricsAddr(), reg, w.Ready, log)
//	if err != nil { return err }
//	defer stop()
func startMetrics(addr string, reg *prometheus.Registry, ready func() bool, log *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	srv, err := metrics.Listen(addr, reg, ready, log)
	if err != nil {
		return nil, err
	}
	log.Info("metrics listening", "url", srv.URL())
	return func() {
		if err := srv.Close(); err != nil {
			log.Warn("stop metrics listener", "err", err)
		}
	}, nil
}

// storeReady is a readiness function for the metrics listener: the
// database answers a ping within two seconds.
func storeReady(st *store.Store) func() bool {
	return func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return st.Ping(ctx) == nil
	}
}
