package pgserver

import (
	"context"
	"database/sql"
	"testing"
	"time"
)

// TestStandby: a standby made from a binaries primary has what the primary
// wrote, comes back with it after Stop and Start, and with an apply delay
// does not have a new row at once.
func TestStandby(t *testing.T) {
	if testing.Short() {
		t.Skip("replica harness: skipped under -short (it runs two PostgreSQL clusters)")
	}
	if _, err := FindBinaries(); err != nil {
		t.Fatalf("PostgreSQL server binaries are required for this test (install postgresql so initdb and pg_basebackup are on PATH): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	primary, err := StartBinaries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer primary.Close()
	p := openDB(t, primary.URL())
	mustExec(t, p, `CREATE TABLE t (id int PRIMARY KEY)`)

	standby, err := StartStandby(ctx, primary, StandbyOptions{})
	if err != nil {
		t.Fatalf("StartStandby: %v", err)
	}
	defer func() { _ = standby.Close() }()
	delayed, err := StartStandby(ctx, primary, StandbyOptions{ApplyDelay: time.Hour})
	if err != nil {
		t.Fatalf("StartStandby with a delay: %v", err)
	}
	defer func() { _ = delayed.Close() }()

	mustExec(t, p, `INSERT INTO t VALUES (1)`)
	if err := standby.WaitReplayed(ctx, primary.URL()); err != nil {
		t.Fatal(err)
	}
	if n := count(t, standby.URL()); n != 1 {
		t.Fatalf("standby has %d rows, want 1", n)
	}
	if n := count(t, delayed.URL()); n != 0 {
		t.Fatalf("the delayed standby has %d rows at once, want 0", n)
	}

	if err := standby.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if db, err := sql.Open("postgres", standby.URL()); err == nil {
		if db.PingContext(ctx) == nil {
			t.Fatal("the stopped standby still answers")
		}
		db.Close()
	}
	mustExec(t, p, `INSERT INTO t VALUES (2)`)
	if err := standby.Start(ctx); err != nil {
		t.Fatalf("Start again: %v", err)
	}
	if err := standby.WaitReplayed(ctx, primary.URL()); err != nil {
		t.Fatal(err)
	}
	if n := count(t, standby.URL()); n != 2 {
		t.Fatalf("restarted standby has %d rows, want 2", n)
	}
}

func openDB(t *testing.T, u string) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func mustExec(t *testing.T, db *sql.DB, stmt string) {
	t.Helper()
	if _, err := db.Exec(stmt); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

func count(t *testing.T, u string) int {
	t.Helper()
	var n int
	if err := openDB(t, u).QueryRow(`SELECT count(*) FROM t`).Scan(&n); err != nil {
		t.Fatalf("count on %s: %v", u, err)
	}
	return n
}
