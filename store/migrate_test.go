package store_test

import (
	"database/sql"
	"os"
	"testing"

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
