package store_test

import (
	"database/sql"
	"os"
	"sync"
	"testing"

	"github.com/jmoiron/sqlx"

	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/store"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestMigrationsRoundTrip: every migration rolls back and applies again, and
// Open refuses a database that is not fully migrated.
func TestMigrationsRoundTrip(t *testing.T) {
	url := pgtest.NewDatabase(t) // migrated up
	db, err := sql.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	lines, err := store.MigrationStatus(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	for range lines {
		if err := store.MigrateDown(t.Context(), db); err != nil {
			t.Fatalf("down: %v", err)
		}
	}
	if _, err := store.Open(t.Context(), url, store.Options{}); err == nil {
		t.Error("Open accepted an unmigrated database")
	}
	if err := store.MigrateUp(t.Context(), db); err != nil {
		t.Fatalf("up again: %v", err)
	}
	st, err := store.Open(t.Context(), url, store.Options{})
	if err != nil {
		t.Fatalf("open after up: %v", err)
	}
	st.Close()
}

// TestMigrateUpConcurrently: many processes running `jobsd migrate up` at
// once (replicas starting together) all succeed, and each migration is
// applied once: goose's session lock serialises them. Two starting points:
// a database goose has never seen, and one where only goose's version table
// exists (as `jobsd migrate status` leaves it). Without the lock the second
// fails: every process applies 00001 at once.
func TestMigrateUpConcurrently(t *testing.T) {
	for _, tt := range []struct {
		name         string
		versionTable bool
	}{
		{name: "fresh database", versionTable: false},
		{name: "version table only", versionTable: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			url := pgtest.NewDatabase(t)
			n := unmigrate(t, url, tt.versionTable)
			migrateConcurrently(t, url, 6)
			checkAppliedOnce(t, url, n)
		})
	}
}

// unmigrate rolls every migration back, dropping goose's version table
// unless keepTable, and returns how many migrations there are.
func unmigrate(t *testing.T, url string, keepTable bool) int {
	t.Helper()
	db, err := sql.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	lines, err := store.MigrationStatus(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	for range lines {
		if err := store.MigrateDown(t.Context(), db); err != nil {
			t.Fatalf("down: %v", err)
		}
	}
	if !keepTable {
		if _, err := db.Exec(`DROP TABLE goose_db_version`); err != nil {
			t.Fatal(err)
		}
	}
	return len(lines)
}

// migrateConcurrently runs MigrateUp from n pools at once, as n processes
// would, and fails the test on any error.
func migrateConcurrently(t *testing.T, url string, n int) {
	t.Helper()
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			db, err := sql.Open("postgres", url)
			if err != nil {
				errs <- err
				return
			}
			defer db.Close()
			errs <- store.MigrateUp(t.Context(), db)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent migrate up: %v", err)
		}
	}
}

// checkAppliedOnce: goose recorded each of the n migrations exactly once,
// and the store opens on the result.
func checkAppliedOnce(t *testing.T, url string, n int) {
	t.Helper()
	db, err := sqlx.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var applied []struct {
		Version int64 `db:"version_id"`
		N       int   `db:"n"`
	}
	if err := db.Select(&applied, `SELECT version_id, count(*) AS n FROM goose_db_version
		WHERE version_id > 0 AND is_applied GROUP BY version_id ORDER BY version_id`); err != nil {
		t.Fatal(err)
	}
	if len(applied) != n {
		t.Errorf("%d versions recorded, want %d: %+v", len(applied), n, applied)
	}
	for _, a := range applied {
		if a.N != 1 {
			t.Errorf("version %d applied %d times", a.Version, a.N)
		}
	}
	st, err := store.Open(t.Context(), url, store.Options{})
	if err != nil {
		t.Fatalf("open after concurrent ups: %v", err)
	}
	st.Close()
}
