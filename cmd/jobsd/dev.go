package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jobsd/jobsd/auth"
	"github.com/jobsd/jobsd/internal/pgserver"
	"github.com/jobsd/jobsd/metrics"
	"github.com/jobsd/jobsd/store"
	"github.com/jobsd/jobsd/ui"
	"github.com/jobsd/jobsd/worker"
)

// runDev runs the API, a worker and a local token issuer against a
// throwaway database: DATABASE_URL if set, else a temporary cluster from the
// PostgreSQL binaries on PATH, else a container started with the docker
// command line (no Docker library is linked into jobsd). Tokens are verified through
// the same code as in production, fetching the issuer's JWKS over HTTP.
func runDev(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	addr := fs.String("addr", envOr("JOBS_ADDR", "127.0.0.1:8080"), "listen address (env JOBS_ADDR)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger()
	if err != nil {
		return err
	}
	flushTraces, err := startTracing(ctx, "jobsd-dev", log)
	if err != nil {
		return err
	}
	defer flushTraces()
	settings, err := readAPISettings()
	if err != nil {
		return err
	}
	db, err := devDBFlags()
	if err != nil {
		return err
	}
	dbURL, closeDB, err := devDatabase(ctx, db.direct, log)
	if err != nil {
		return err
	}
	defer closeDB()
	if db.url == "" { // the throwaway database: no pooler
		db.url, db.direct = dbURL, dbURL
	}

	st, err := store.Open(ctx, db.url, db.storeOptions(store.Options{MaxOpenConns: settings.dbMaxConns, ReadBatches: settings.readBatches}))
	if err != nil {
		return err
	}
	defer st.Close()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}
	return serveDev(ctx, ln, st, db.direct, settings, log)
}

// devDBFlags reads dev's database settings: none for a throwaway database;
// DATABASE_URL, with JOBS_DB_POOLER and JOBS_DIRECT_DATABASE_URL as serve
// reads them, for a database of the developer's.
func devDBFlags() (dbFlags, error) {
	db := dbFlags{url: os.Getenv("DATABASE_URL")}
	if err := db.readPooler(); err != nil {
		return db, err
	}
	if db.url == "" {
		if db.pooler {
			return db, usagef("JOBS_DB_POOLER=%s needs DATABASE_URL (the pooler) and JOBS_DIRECT_DATABASE_URL: a throwaway database has no pooler", poolerTransaction)
		}
		return db, nil
	}
	if err := db.check(); err != nil {
		return db, err
	}
	return db, db.requireDirect()
}

// serveDev serves dev's API (with the console and, unless it has a listener
// of its own, the issuer) on ln, with a worker, until ctx ends or the worker
// gives up. Both LISTEN on dbURL, a direct connection.
func serveDev(ctx context.Context, ln net.Listener, st *store.Store, dbURL string, settings apiSettings, log *slog.Logger) error {
	// The issuer lives under /dev-issuer of the API unless
	// JOBS_DEV_ISSUER_ADDR gives it a listener (an origin) of its own, as
	// Cognito's is in production.
	issuerURL := devIssuerURL(ln.Addr().String())
	var issuerLn net.Listener
	if a := os.Getenv("JOBS_DEV_ISSUER_ADDR"); a != "" {
		var err error
		if issuerLn, err = net.Listen("tcp", a); err != nil {
			ln.Close()
			return fmt.Errorf("listen on %s (JOBS_DEV_ISSUER_ADDR): %w", a, err)
		}
		defer issuerLn.Close()
		issuerURL = devIssuerURL(issuerLn.Addr().String())
	}
	iss, login, consoleBase, err := devLogin(issuerURL, ln.Addr().String())
	if err != nil {
		return err
	}
	// dev always serves metrics, on a free loopback port unless
	// JOBS_METRICS_ADDR names one: API and worker share the registry.
	reg := newProcessMetrics(st, log)
	draining := make(chan struct{})
	e, h, err := newAPI(st, dbURL, auth.Config{Issuer: issuerURL, ClientIDs: []string{devClientID}}, settings, draining, reg, log)
	if err != nil {
		return err
	}
	defer h.Close()
	stopWebhooks := startWebhookDelivery(ctx, st, h, settings.webhooks, reg, log)
	defer stopWebhooks()
	msrv, err := metrics.Listen(envOr("JOBS_METRICS_ADDR", "127.0.0.1:0"), reg, storeReady(st), log)
	if err != nil {
		return err
	}
	defer msrv.Close()
	log.Info("metrics listening", "url", msrv.URL())
	if issuerLn == nil {
		e.Any("/dev-issuer/*", echo.WrapHandler(login.Handler()))
	} else {
		stopIssuer := serveIssuer(issuerLn, login.Handler(), log)
		defer stopIssuer()
	}
	err = mountConsole(e, ui.Config{Issuer: issuerURL, ClientID: devClientID, BaseURL: consoleBase}, log)
	if err != nil {
		return err
	}

	w, err := newDevWorker(st, dbURL, reg, log)
	if err != nil {
		return err
	}
	// A worker that gives up (too many stuck handlers) ends the whole dev
	// process, as its supervisor would restart a standalone worker.
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	workerDone := make(chan error, 1)
	go func() { err := w.Run(ctx); stop(); workerDone <- err }()

	printReady(iss, ln.Addr().String(), msrv.URL(), ui.URL(consoleBase))
	err = serveHTTP(ctx, ln, e, draining, 0, log)
	if werr := <-workerDone; err == nil {
		err = werr
	}
	return err
}

// devLogin loads (or creates) the dev issuer's key for issuerURL, and
// returns the issuer and its sign-in pages for the console, which is served
// at consoleBase: JOBS_UI_BASE_URL, or the root of the API at apiAddr.
func devLogin(issuerURL, apiAddr string) (iss *auth.Issuer, login *auth.Login, consoleBase string, err error) {
	keyPath, err := devKeyPath()
	if err != nil {
		return nil, nil, "", err
	}
	iss, err = auth.LoadOrCreateIssuer(keyPath, issuerURL)
	if err != nil {
		return nil, nil, "", err
	}
	consoleBase = envOr("JOBS_UI_BASE_URL", strings.TrimSuffix(devIssuerURL(apiAddr), "/dev-issuer"))
	if err := ui.CheckBaseURL(consoleBase); err != nil {
		return nil, nil, "", usagef("JOBS_UI_BASE_URL: %v", err)
	}
	login, err = auth.NewLogin(iss, auth.LoginConfig{ClientID: devClientID, RedirectURI: ui.RedirectURI(consoleBase)})
	if err != nil {
		return nil, nil, "", err
	}
	return iss, login, consoleBase, nil
}

// newDevWorker is dev's worker, configured as a standalone one is, with its
// metrics on reg.
func newDevWorker(st *store.Store, dbURL string, reg *prometheus.Registry, log *slog.Logger) (*worker.Worker, error) {
	if err := allowCrashMarkers(true); err != nil { // dev rehearses crashes too
		return nil, err
	}
	wcfg, err := workerConfig(log)
	if err != nil {
		return nil, err
	}
	wcfg.Metrics = metrics.NewWorker(reg)
	return newWorker(st, dbURL, wcfg)
}

// devDatabase finds a database for dev, the one at direct (a direct
// connection, for the migrations' session lock) when it is set, and
// migrates it.
func devDatabase(ctx context.Context, direct string, log *slog.Logger) (url string, closeFn func(), err error) {
	srv, err := pgserver.Start(ctx, pgserver.Options{
		URL:   direct,
		Order: []pgserver.Source{pgserver.SourceBinaries, pgserver.SourceDocker},
		Image: os.Getenv("JOBS_TEST_POSTGRES_IMAGE"),
		Log:   func(f string, a ...any) { log.Info(fmt.Sprintf(f, a...)) },
	})
	if err != nil {
		return "", nil, err
	}
	closeFn = func() {
		if err := srv.Close(); err != nil {
			log.Warn("stop dev database", "err", err)
		}
	}
	url = srv.URL()
	if srv.Source() != pgserver.SourceURL {
		if url, err = srv.CreateDatabase(ctx, "jobsd_dev", ""); err != nil {
			closeFn()
			return "", nil, err
		}
	}
	db, err := sql.Open("postgres", url)
	if err == nil {
		err = store.MigrateUp(ctx, db)
		db.Close()
	}
	if err != nil {
		closeFn()
		return "", nil, err
	}
	return url, closeFn, nil
}

// serveIssuer serves the dev issuer on a listener of its own; the function
// it returns stops it.
func serveIssuer(ln net.Listener, h http.Handler, log *slog.Logger) (stop func()) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("dev issuer stopped", "err", err)
		}
	}()
	return func() { srv.Close() }
}

// printReady prints the lines a developer needs: where the API is, a curl
// command that works as it stands, with an admin token for "alice", where
// the metrics are, and where the console is.
func printReady(iss *auth.Issuer, addr, metricsURL, consoleURL string) {
	tok, err := iss.Mint("alice", devClientID, []string{auth.DefaultAdminGroup}, 24*time.Hour)
	if err != nil {
		tok = "$(jobsd token --sub alice --admin)"
	}
	base := "http://" + addr
	fmt.Printf("jobsd dev ready on %s (metrics: %s); try: curl -s -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' -d '{\"prompt\":\"Summarise the risks of {{crop}} farming\",\"variables\":{\"crop\":\"maize\"}}' %s/api/admin/prompts/preview\n",
		base, metricsURL, tok, base)
	fmt.Printf("console: %s (sign in with any user name; keep \"Administrator\" ticked)\n", consoleURL)
}
