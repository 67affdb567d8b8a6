package pgtest

import (
	"os"
	"testing"

	"github.com/jobsd/jobsd/internal/pgserver"
)

// Pooler reports whether JOBS_TEST_POOLER=pgbouncer asks the suites to run
// through PgBouncer in transaction mode: NewStore's stores, the in-process
// API of apitest (the conformance suite) and the jobsd processes of the
// fault tests, each with a direct connection for what needs a session.
func Pooler() bool { return os.Getenv("JOBS_TEST_POOLER") == "pgbouncer" }

// pgbouncerRequired reports whether a missing pgbouncer fails a test
// rather than skipping it: in CI (.ci/run installs it and sets
// JOBS_TEST_REQUIRE_PGBOUNCER=1; JOBS_TEST_REQUIRE_DOCKER=1 marks CI too)
// and when JOBS_TEST_POOLER asks for it.
func pgbouncerRequired() bool {
	return os.Getenv("JOBS_TEST_REQUIRE_PGBOUNCER") == "1" || os.Getenv("JOBS_TEST_REQUIRE_DOCKER") == "1" || Pooler()
}

// PgBouncer starts PgBouncer in transaction pooling mode in front of the
// server of dbURL (a test's database URL, or a proxy in front of its
// server) for this test, and stops it when the test ends; its URL method
// turns a database URL into the same database through the pooler. The
// pool has fewer server connections than jobsd's pools have client ones,
// so transactions do move between server connections.
//
// Under -short it skips (unless JOBS_TEST_POOLER asks for PgBouncer).
// Without the pgbouncer executable it skips with how to install it, except
// in CI, where it fails.
func PgBouncer(t testing.TB, dbURL string) *pgserver.PgBouncer {
	t.Helper()
	return PgBouncerWith(t, dbURL, pgserver.PgBouncerOptions{PoolSize: 4})
}

// PgBouncerWith is PgBouncer with options (a pool of one server connection,
// say).
func PgBouncerWith(t testing.TB, dbURL string, opts pgserver.PgBouncerOptions) *pgserver.PgBouncer {
	t.Helper()
	if testing.Short() && !Pooler() {
		t.Skip("PgBouncer tests skip under -short")
	}
	if _, err := pgserver.FindPgBouncer(); err != nil {
		if pgbouncerRequired() {
			t.Fatalf("pgtest: PgBouncer is required here: %v", err)
		}
		t.Skipf("pgtest: skipping: %v", err)
	}
	b, err := pgserver.StartPgBouncer(t.Context(), dbURL, opts)
	if err != nil {
		t.Fatalf("pgtest: start pgbouncer: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("pgtest: stop pgbouncer: %v", err)
		}
	})
	return b
}
