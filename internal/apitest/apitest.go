// Package apitest runs the real jobsd API and a worker in process, for the
// conformance suite and for the tests and runnable examples of package
// client and of jobsctl.
//
// Start brings up a throwaway PostgreSQL database (through internal/pgtest:
// JOBS_TEST_DATABASE_URL, a container, or the PostgreSQL binaries on PATH),
// the API on a loopback port with a local token issuer, and a worker that
// runs the real job handlers against the network-free local model provider,
// with retry backoffs in milliseconds so failing jobs end quickly.
package apitest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"time"

	"github.com/jobsd/jobsd/auth"
	"github.com/jobsd/jobsd/hub"
	"github.com/jobsd/jobsd/impl"
	"github.com/jobsd/jobsd/internal/eventually"
	"github.com/jobsd/jobsd/internal/pgserver"
	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/jobtype"
	"github.com/jobsd/jobsd/model"
	"github.com/jobsd/jobsd/store"
	"github.com/jobsd/jobsd/worker"
)

// ClientID is the app client whose tokens the server accepts.
const ClientID = "apitest"

// Options configure Start.
type Options struct {
	// NoWorker leaves jobs PENDING: no worker is started.
	NoWorker bool
	// Log receives the server's and the worker's logs; nil discards them.
	Log *slog.Logger
	// CORSOrigins is the API's CORS allow-list.
	CORSOrigins []string
}

// Server is a running API (and worker).
type Server struct {
	// URL is the API's base URL, e.g. http://127.0.0.1:41234.
	URL string
	// Store is the server's database.
	Store *store.Store

	issuer  *auth.Issuer
	cleanup []func()
	once    sync.Once
}

// Start starts PostgreSQL, the API and (unless opts.NoWorker) a worker.
// Call Close when done; it is meant for TestMain, once per test binary.
func Start(opts Options) (s *Server, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s = &Server{}
	defer func() {
		if err != nil {
			s.Close()
			s = nil
		}
	}()
	log := opts.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}

	url, err := s.startDatabase(ctx)
	if err != nil {
		return nil, err
	}
	if err = s.startIssuer(); err != nil {
		return nil, err
	}
	if err = s.startAPI(url, opts.CORSOrigins, log); err != nil {
		return nil, err
	}
	if !opts.NoWorker {
		if err = s.startWorker(url, log); err != nil {
			return nil, err
		}
		if err = s.waitForWorker(ctx); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// waitForWorker returns once the worker is in the registry. Its first act
// puts it there, but concurrently with its first claims (and a failed
// registration waits for the next heartbeat), so a test that asked the
// admin API for the workers right after its first job ended could find
// none (TestAdminCommands did, once, in CI).
func (s *Server) waitForWorker(ctx context.Context) error {
	err := eventually.Wait(time.Minute, func() error {
		ws, err := s.Store.Processes(ctx, store.KindWorker)
		if err == nil && len(ws) == 0 {
			err = errors.New("none in the registry")
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("apitest: waiting for the worker to register: %w", err)
	}
	return nil
}

// startDatabase starts PostgreSQL, creates a database and opens s.Store on
// it; it returns the database's URL, where the API and the worker LISTEN.
// With JOBS_TEST_POOLER=pgbouncer the store goes through PgBouncer in
// transaction mode (store.Options.Pooler), as a deployment behind one does.
func (s *Server) startDatabase(ctx context.Context) (url string, err error) {
	stopPG, err := pgtest.Start()
	if err != nil {
		return "", err
	}
	s.cleanup = append(s.cleanup, stopPG)
	url, err = pgtest.CreateDatabase(ctx)
	if err != nil {
		return "", err
	}
	poolURL, opts := url, store.Options{}
	if pgtest.Pooler() {
		b, err := pgserver.StartPgBouncer(ctx, url, pgserver.PgBouncerOptions{PoolSize: 4})
		if err != nil {
			return "", err
		}
		s.cleanup = append(s.cleanup, func() { _ = b.Close() })
		poolURL, opts.Pooler = b.URL(url), true
	}
	st, err := store.Open(ctx, poolURL, opts)
	if err != nil {
		return "", err
	}
	s.Store = st
	s.cleanup = append(s.cleanup, func() { st.Close() })
	return url, nil
}

// startIssuer creates the token issuer, with a new key, and serves its
// JWKS.
func (s *Server) startIssuer() error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	jwks := httptest.NewUnstartedServer(nil)
	s.issuer = auth.NewIssuer(key, "http://"+jwks.Listener.Addr().String())
	jwks.Config.Handler = s.issuer.JWKSHandler()
	jwks.Start()
	s.cleanup = append(s.cleanup, jwks.Close)
	return nil
}

// startAPI serves the API, with a hub that LISTENs on the database at url,
// on a loopback port, and sets s.URL.
func (s *Server) startAPI(url string, corsOrigins []string, log *slog.Logger) error {
	v, err := auth.NewVerifier(auth.Config{Issuer: s.issuer.URL(), ClientIDs: []string{ClientID}})
	if err != nil {
		return err
	}
	h, err := hub.New(url, log)
	if err != nil {
		return err
	}
	s.cleanup = append(s.cleanup, func() { h.Close() })
	e, err := impl.New(impl.Config{Store: s.Store, Verifier: v, Log: log, Hub: h, CORSOrigins: corsOrigins})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("apitest: serving", "err", err)
		}
	}()
	s.cleanup = append(s.cleanup, func() { srv.Close() })
	s.URL = "http://" + ln.Addr().String()
	return nil
}

// startWorker runs a worker, with the real job handlers and the local model
// provider, that LISTENs on the database at url; Close stops it.
func (s *Server) startWorker(url string, log *slog.Logger) error {
	st := s.Store
	w, err := worker.New(worker.Config{
		Store:        st,
		Handlers:     jobtype.WorkerHandlers(st, model.NewLocal(), jobtype.ParseOptions{}),
		Classify:     jobtype.Classify,
		Log:          log,
		ListenURL:    url,
		Concurrency:  4,
		Lease:        5 * time.Second,
		PollEvery:    500 * time.Millisecond,
		BackoffBase:  20 * time.Millisecond,
		BackoffMax:   100 * time.Millisecond,
		ShutdownWait: 200 * time.Millisecond,
	})
	if err != nil {
		return err
	}
	wctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.Run(wctx); err != nil {
			log.Error("apitest: worker", "err", err)
		}
	}()
	s.cleanup = append(s.cleanup, func() { stop(); <-done })
	return nil
}

// Close stops the worker, the API and PostgreSQL.
func (s *Server) Close() {
	s.once.Do(func() {
		for i := len(s.cleanup) - 1; i >= 0; i-- {
			s.cleanup[i]()
		}
	})
}

// Issuer is the server's token issuer, for tests that craft their own tokens.
func (s *Server) Issuer() *auth.Issuer { return s.issuer }

// Token returns a valid one-hour access token for the user sub; admin puts
// it in the admin group (needed for AI previews).
func (s *Server) Token(sub string, admin bool) (string, error) {
	var groups []string
	if admin {
		groups = []string{"admin"}
	}
	return s.issuer.Mint(sub, ClientID, groups, time.Hour)
}

// Main starts a Server, sets JOBS_URL and JOBS_TOKEN (an admin token for
// the user "example") for examples and CLI runs, runs the tests and stops
// the server. Use it as TestMain: os.Exit(apitest.Main(m, &srv)).
func Main(m interface{ Run() int }, srv **Server) int {
	s, err := Start(Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "apitest:", err)
		return 1
	}
	defer s.Close()
	tok, err := s.Token("example", true)
	if err != nil {
		fmt.Fprintln(os.Stderr, "apitest:", err)
		return 1
	}
	if err := errors.Join(os.Setenv("JOBS_URL", s.URL), os.Setenv("JOBS_TOKEN", tok)); err != nil {
		fmt.Fprintln(os.Stderr, "apitest:", err)
		return 1
	}
	*srv = s
	return m.Run()
}
