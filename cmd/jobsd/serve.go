package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jobsd/jobsd/auth"
	"github.com/jobsd/jobsd/hub"
	"github.com/jobsd/jobsd/impl"
	"github.com/jobsd/jobsd/metrics"
	"github.com/jobsd/jobsd/store"
	"github.com/jobsd/jobsd/ui"
)

func runServe(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("addr", envOr("JOBS_ADDR", ":8080"), "listen address (env JOBS_ADDR)")
	db, log, err := startProcess(fs, args)
	if err != nil {
		return err
	}
	if err := db.requireDirect(); err != nil {
		return err
	}
	flushTraces, err := startTracing(ctx, "jobsd-api", log)
	if err != nil {
		return err
	}
	defer flushTraces()
	acfg, err := authConfig()
	if err != nil {
		return err
	}
	settings, err := readAPISettings()
	if err != nil {
		return err
	}
	console, consoleOn, err := consoleConfig(acfg)
	if err != nil {
		return err
	}
	outbox, err := outboxOn()
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, db.url, db.storeOptions(store.Options{MaxOpenConns: settings.dbMaxConns, ReadBatches: settings.readBatches, Outbox: outbox,
		ReadURLs: settings.readURLs, MaxLag: settings.maxLag, ReplicaChanged: logReplica(log)}))
	if err != nil {
		return err
	}
	defer st.Close()
	stopDispatch, err := startDispatch(ctx, st, log)
	if err != nil {
		return err
	}
	defer stopDispatch()
	var reg *prometheus.Registry
	if metricsAddr() != "" {
		reg = newProcessMetrics(st, log)
	}
	replicas, stopReplicas := startReplicas(ctx, st, log)
	defer stopReplicas()
	settings.replicas = replicas
	draining := make(chan struct{})
	e, h, err := newAPI(st, db.direct, acfg, settings, draining, reg, log)
	if err != nil {
		return err
	}
	defer h.Close()
	stopWebhooks := startWebhookDelivery(ctx, st, h, settings.webhooks, reg, log)
	defer stopWebhooks()
	if consoleOn {
		if err := mountConsole(e, console, log); err != nil {
			return err
		}
		log.Info("console enabled", "url", ui.URL(console.BaseURL))
	}
	stopMetrics, err := startMetrics(metricsAddr(), reg, storeReady(st), log)
	if err != nil {
		return err
	}
	defer stopMetrics()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}
	drainDelay, err := envDuration("JOBS_DRAIN_DELAY", 0)
	if err != nil {
		return err
	}
	log.Info("api ready", "addr", ln.Addr().String())
	return serveHTTP(ctx, ln, e, draining, drainDelay, log)
}

// logReplica logs a read replica that went in or out of use.
func logReplica(log *slog.Logger) func(store.ReplicaStatus) {
	return func(r store.ReplicaStatus) {
		if r.InUse {
			log.Info("read replica in use", "replica", r.Name, "lag", r.Lag.String())
			return
		}
		log.Warn("read replica out of use: reads go to the primary", "replica", r.Name, "up", r.Up, "problem", r.Problem, "lag", r.Lag.String())
	}
}

// startReplicas enters this process in the registry of live API processes,
// whose number N divides the per-user limits, and keeps its entry fresh.
// The heartbeat stops, and the entry goes, when ctx ends (SIGTERM); stop
// also ends it, and waits until it has.
func startReplicas(ctx context.Context, st *store.Store, log *slog.Logger) (replicas *impl.Replicas, stop func()) {
	replicas = impl.NewReplicas(st, log)
	if err := replicas.Refresh(ctx); err != nil {
		log.Warn("api replicas: first heartbeat failed; counting this process alone", "err", err)
	}
	replicasCtx, stopReplicas := context.WithCancel(ctx)
	replicasDone := make(chan struct{})
	go func() { replicas.Run(replicasCtx); close(replicasDone) }()
	return replicas, func() { stopReplicas(); <-replicasDone }
}

// newAPI assembles the API server from its settings, with the hub that
// LISTENs for job changes on dbURL, a direct connection (the caller closes it). With a registry, the
// API's metrics and the hub's listener state go on it.
func newAPI(st *store.Store, dbURL string, acfg auth.Config, s apiSettings, draining <-chan struct{}, reg *prometheus.Registry, log *slog.Logger) (e *echo.Echo, h *hub.Hub, err error) {
	v, err := auth.NewVerifier(acfg)
	if err != nil {
		return nil, nil, usagef("%v", err)
	}
	h, err = hub.New(dbURL, log)
	if err != nil {
		return nil, nil, err
	}
	if len(s.readURLs) > 0 {
		// Changes older than the lag allowed are in every replica in use.
		h.Remember(2 * s.maxLag)
	}
	var m *metrics.API
	if reg != nil {
		m = metrics.NewAPI(reg)
		metrics.RegisterListener(reg, hub.Channel, h.Up)
	}
	e, err = impl.New(impl.Config{
		Store:        st,
		Verifier:     v,
		Log:          log,
		CORSOrigins:  s.corsOrigins,
		MaxBodyBytes: int64(s.maxBodyBytes),
		MaxAttempts:  s.maxAttempts,
		Hub:          h,
		Draining:     draining,
		ReadLimit:    s.readLimit,
		CreateLimit:  s.createLimit,
		Retention:    s.retention,
		Metrics:      m,
		Replicas:     s.replicas,
		UserWaiters:  s.userWaiters,

		AuthFailLimit:  s.authFail,
		TrustedProxies: s.trusted,
		Webhooks:       s.webhooks.api(),
	})
	if err != nil {
		h.Close()
		return nil, nil, err
	}
	return e, h, nil
}

// serveHTTP serves until ctx ends, then closes draining (/readyz says 503,
// long polls answer, event streams end), keeps taking requests for
// drainDelay, so that a load balancer that checks /readyz stops sending here
// before the listener closes (a connection refused is retried elsewhere, but
// a request already sent on a closing keep-alive connection may not be), and
// then lets in-flight requests finish (up to 30 s). Only header reads and
// idle connections have global timeouts: a global write timeout would cut
// long polls and event streams.
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler, draining chan struct{}, drainDelay time.Duration, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	close(draining)
	if drainDelay > 0 {
		log.Info("shutting down: draining (readyz 503)", "for", drainDelay.String())
		select {
		case err := <-errc:
			return fmt.Errorf("serve: %w", err)
		case <-time.After(drainDelay):
		}
	}
	log.Info("shutting down: finishing in-flight requests")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
