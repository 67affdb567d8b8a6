package pgserver

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/jobsd/jobsd/internal/eventually"
)

// TestStartPgBouncer: pgbouncer starts in front of a binaries cluster, in
// transaction mode (two client connections share its one server
// connection, session state and all), counts what passes through it, and
// Close stops it and removes its folder.
func TestStartPgBouncer(t *testing.T) {
	if testing.Short() {
		t.Skip("PgBouncer tests skip under -short")
	}
	if _, err := FindPgBouncer(); err != nil {
		if os.Getenv("JOBS_TEST_REQUIRE_PGBOUNCER") == "1" || os.Getenv("JOBS_TEST_REQUIRE_DOCKER") == "1" {
			t.Fatal(err)
		}
		t.Skipf("skipping: %v", err)
	}
	if _, err := FindBinaries(); err != nil {
		t.Fatalf("PostgreSQL server binaries are required for this test: %v", err)
	}
	ctx := context.Background()
	srv, err := StartBinaries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	url, err := srv.CreateDatabase(ctx, "pooled", "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := StartPgBouncer(ctx, srv.URL(), PgBouncerOptions{PoolSize: 1, Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("postgres", b.URL(url))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	first, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = first.Close() }()
	second, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = second.Close() }()
	if _, err := first.ExecContext(ctx, `SELECT set_config('jobsd.mark', 'set by the first', false)`); err != nil {
		t.Fatal(err)
	}
	var got, database string
	if err := second.QueryRowContext(ctx, `SELECT current_setting('jobsd.mark', true), current_database()`).Scan(&got, &database); err != nil {
		t.Fatal(err)
	}
	if got != "set by the first" || database != "pooled" {
		t.Fatalf("the second client connection sees %q in database %q: want the first's session setting in %q (one server connection, transaction pooling)", got, database, "pooled")
	}
	eventually.NoError(t, 70*time.Second, "pgbouncer counts the transactions (SHOW STATS)", func() error {
		n, err := b.Transactions(ctx, srv.URL(), "pooled")
		if err == nil && n == 0 {
			err = errors.New("none counted yet")
		}
		return err
	})
	dir := b.dir
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Close left %s behind (stat: %v)", dir, err)
	}
}
