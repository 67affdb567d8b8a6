// Package pgtest gives each test a fresh, migrated PostgreSQL database. One
// server serves a whole test binary (started in TestMain through Main); each
// test's database is a copy of a migrated template, which takes milliseconds.
//
// The server is, in order: JOBS_TEST_DATABASE_URL; a container through
// testcontainers-go (image JOBS_TEST_POSTGRES_IMAGE); a throwaway cluster from
// the PostgreSQL binaries on PATH. JOBS_TEST_POSTGRES_SOURCE (docker,
// binaries or url) allows only that source, so CI can run the suite on each
// set-up a newcomer may have without a silent fallback to another;
// JOBS_TEST_REQUIRE_DOCKER=1 means docker. With none available the tests fail and say how to fix it; they
// never skip.
package pgtest

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobsd/jobsd/internal/pgserver"
	"github.com/jobsd/jobsd/internal/pgserver/pgdocker"
	"github.com/jobsd/jobsd/store"
)

const template = "jobsd_template"

var (
	server  *pgserver.Server
	counter atomic.Int64
)

// Main starts the server, runs the tests and stops the server; call it from
// TestMain: os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	stop, err := Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
		return 1
	}
	defer stop()
	return m.Run()
}

// Start starts the server and migrates the template, for a TestMain that
// needs more than Main does; stop shuts the server down.
func Start() (stop func(), err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv, err := start(ctx)
	if err != nil {
		return nil, err
	}
	server = srv
	return func() { srv.Close() }, nil
}

func start(ctx context.Context) (*pgserver.Server, error) {
	opts := pgserver.Options{
		URL:   os.Getenv("JOBS_TEST_DATABASE_URL"),
		Order: []pgserver.Source{pgserver.SourceDocker, pgserver.SourceBinaries},
		Image: os.Getenv("JOBS_TEST_POSTGRES_IMAGE"),
		// testcontainers-go, linked by test binaries only (pgdocker).
		Docker: pgdocker.Start,
		Log:    func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) },
	}
	if os.Getenv("JOBS_TEST_REQUIRE_DOCKER") == "1" {
		opts.Require = pgserver.SourceDocker
	}
	if src := os.Getenv("JOBS_TEST_POSTGRES_SOURCE"); src != "" {
		opts.Require = pgserver.Source(src)
	}
	srv, err := pgserver.Start(ctx, opts)
	if err != nil {
		return nil, err
	}
	name := fmt.Sprintf("%s_%d", template, os.Getpid())
	url, err := srv.CreateDatabase(ctx, name, "")
	if err == nil {
		err = migrate(ctx, url)
	}
	if err != nil {
		srv.Close()
		return nil, err
	}
	templateName = name
	return srv, nil
}

var templateName string

func migrate(ctx context.Context, url string) error {
	db, err := sql.Open("postgres", url)
	if err != nil {
		return err
	}
	defer db.Close()
	return store.MigrateUp(ctx, db)
}

// NewDatabase returns the URL of a fresh migrated database for this test.
func NewDatabase(t testing.TB) string {
	t.Helper()
	url, err := CreateDatabase(t.Context())
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return url
}

// CreateDatabase makes a fresh migrated database and returns its URL.
func CreateDatabase(ctx context.Context) (string, error) {
	if server == nil {
		return "", fmt.Errorf("pgtest: call pgtest.Main or pgtest.Start from TestMain")
	}
	name := fmt.Sprintf("t_%d_%d", os.Getpid(), counter.Add(1))
	return server.CreateDatabase(ctx, name, templateName)
}

// NewStore opens a store on a fresh database and closes it when the test
// ends; the URL it returns is the database's own. With
// JOBS_TEST_POOLER=pgbouncer the store goes through PgBouncer in
// transaction mode (Options.Pooler).
func NewStore(t testing.TB) (*store.Store, string) {
	t.Helper()
	return NewStoreWith(t, store.Options{})
}

// NewStoreWith is NewStore with options.
func NewStoreWith(t testing.TB, opts store.Options) (*store.Store, string) {
	t.Helper()
	url := NewDatabase(t)
	poolURL := url
	if Pooler() {
		poolURL, opts.Pooler = PgBouncer(t, url).URL(url), true
	}
	st, err := store.Open(t.Context(), poolURL, opts)
	if err != nil {
		t.Fatalf("pgtest: open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st, url
}

// Describe names the server for logs ("docker", "binaries", "url").
func Describe() string {
	if server == nil {
		return "none"
	}
	return strings.ToLower(string(server.Source()))
}
