package store_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jmoiron/sqlx"

	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/store"
)

// The registry statements of the release before migration 00011, verbatim:
// processes of that release still run them during a rolling upgrade.
const (
	oldRegisterWorker = `
		WITH forgotten AS (DELETE FROM workers WHERE last_seen_at < now() - make_interval(secs => $8))
		INSERT INTO workers (id, host, pid, version, concurrency, in_flight, started_at, last_seen_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, now())
		ON CONFLICT (id) DO UPDATE SET in_flight = EXCLUDED.in_flight, concurrency = EXCLUDED.concurrency,
			last_seen_at = now()`
	oldWorkers = `
		SELECT id, host, pid, version, concurrency, in_flight, started_at, last_seen_at FROM workers
		WHERE last_seen_at >= now() - make_interval(secs => $1)
		ORDER BY started_at, id`
	oldCountWorkers = `SELECT count(*) FROM workers
		WHERE last_seen_at >= now() - make_interval(secs => $1)`
	oldRegisterAPIProcess = `
		WITH forgotten AS (DELETE FROM api_processes WHERE last_seen_at < now() - make_interval(secs => $6)),
		upsert AS (
			INSERT INTO api_processes (id, host, pid, started_at, last_seen_at)
			VALUES ($1, $2, $3, $4, now())
			ON CONFLICT (id) DO UPDATE SET last_seen_at = now())
		SELECT 1 + count(*) FROM api_processes
		WHERE id <> $1 AND last_seen_at >= now() - make_interval(secs => $5)`
	oldUnregisterAPIProcess = `DELETE FROM api_processes WHERE id = $1`
	oldUnregisterWorker     = `DELETE FROM workers WHERE id = $1`
)

// migrationSetup is a database migrated up to 00010 (the release before the
// one registry), with a worker, an API process and one of its waiters.
type migrationSetup struct {
	url   string
	db    *sqlx.DB
	start time.Time
}

func newMigrationSetup(t *testing.T) migrationSetup {
	t.Helper()
	url := pgtest.NewDatabase(t)
	db, err := sqlx.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s := migrationSetup{url: url, db: db, start: time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)}
	s.downTo(t, 10)
	s.exec(t, `INSERT INTO workers (id, host, pid, version, concurrency, in_flight, started_at)
		VALUES ('w1', 'box', 42, 'v1', 8, 3, $1)`, s.start)
	s.exec(t, `INSERT INTO api_processes (id, host, pid, started_at) VALUES ('a1', 'web', 9, $1)`, s.start)
	s.exec(t, `INSERT INTO waiters (id, user_id, process_id) VALUES (1, 'u', 'a1')`)
	return s
}

// down rolls back migration version, which must be the newest applied.
func (s migrationSetup) down(t *testing.T, version int64) {
	t.Helper()
	var current int64
	if err := s.db.Get(&current, `SELECT max(version_id) FROM goose_db_version WHERE is_applied`); err != nil {
		t.Fatal(err)
	}
	if current != version {
		t.Fatalf("newest migration %d, want %d", current, version)
	}
	if err := store.MigrateDown(t.Context(), s.db.DB); err != nil {
		t.Fatalf("down: %v", err)
	}
}

// downTo rolls back every migration newer than version, newest first.
func (s migrationSetup) downTo(t *testing.T, version int64) {
	t.Helper()
	for {
		var current int64
		if err := s.db.Get(&current, `SELECT max(version_id) FROM goose_db_version WHERE is_applied`); err != nil {
			t.Fatal(err)
		}
		if current <= version {
			return
		}
		s.down(t, current)
	}
}

func (s migrationSetup) up(t *testing.T) {
	t.Helper()
	if err := store.MigrateUp(t.Context(), s.db.DB); err != nil {
		t.Fatalf("up: %v", err)
	}
}

func (s migrationSetup) exec(t *testing.T, q string, args ...any) {
	t.Helper()
	if _, err := s.db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// waiterTable is the table the waiters' foreign key references.
func (s migrationSetup) waiterTable(t *testing.T) string {
	t.Helper()
	var table string
	if err := s.db.Get(&table, `SELECT confrelid::regclass::text FROM pg_constraint
		WHERE conname = 'waiters_process_id_fkey'`); err != nil {
		t.Fatal(err)
	}
	return table
}

// openWaiterSQL opens a waiter through the database function, as both
// releases do, with the API processes' 30 s window.
func (s migrationSetup) openWaiter(t *testing.T, id int64, process string, capacity int) bool {
	t.Helper()
	var ok bool
	if err := s.db.Get(&ok, `SELECT open_waiter($1, 'u', $2, $3, 30)`, id, process, capacity); err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestProcessesMigration: 00011 copies both registries into processes with
// the waiters still attached, and its Down copies them back; Up, Down and
// Up again leave a schema the store opens.
func TestProcessesMigration(t *testing.T) {
	s := newMigrationSetup(t)
	s.up(t)

	var got []store.Process
	if err := s.db.Select(&got, `SELECT id, kind, host, pid, version, concurrency, in_flight, started_at
		FROM processes ORDER BY id`); err != nil {
		t.Fatal(err)
	}
	want := []store.Process{
		{ID: "a1", Kind: store.KindAPI, Host: "web", PID: 9, Version: "unknown", StartedAt: s.start},
		{ID: "w1", Kind: store.KindWorker, Host: "box", PID: 42, Version: "v1", Concurrency: 8, InFlight: 3, StartedAt: s.start},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("processes after up (-want +got):\n%s", diff)
	}
	if table := s.waiterTable(t); table != "processes" {
		t.Errorf("waiters reference %s, want processes", table)
	}
	if s.openWaiter(t, 2, "a1", 2) != true || s.openWaiter(t, 3, "a1", 2) != false {
		t.Error("open_waiter does not count a1's waiter in processes against a cap of 2")
	}

	s.downTo(t, 10)
	var workers, apis int
	if err := s.db.Get(&workers, `SELECT count(*) FROM workers WHERE id = 'w1' AND concurrency = 8 AND in_flight = 3`); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Get(&apis, `SELECT count(*) FROM api_processes WHERE id = 'a1' AND started_at = $1`, s.start); err != nil {
		t.Fatal(err)
	}
	if workers != 1 || apis != 1 {
		t.Errorf("after down: %d of w1 in workers, %d of a1 in api_processes; want 1 and 1", workers, apis)
	}
	if table := s.waiterTable(t); table != "api_processes" {
		t.Errorf("after down, waiters reference %s, want api_processes", table)
	}
	if s.openWaiter(t, 4, "a1", 2) != false {
		t.Error("after down, open_waiter does not count a1's two waiters in api_processes")
	}
	s.exec(t, oldUnregisterAPIProcess, "a1")
	var left int
	if err := s.db.Get(&left, `SELECT count(*) FROM waiters`); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("after down, %d waiters left once a1 unregistered, want 0 (the cascade)", left)
	}

	s.up(t)
	st, err := store.Open(t.Context(), s.url, store.Options{})
	if err != nil {
		t.Fatalf("open after up, down, up: %v", err)
	}
	st.Close()
}

// TestProcessesMigrationOldRelease: after 00011, the previous release's own
// registry statements still work, through the views that stand in for its
// tables, and read and write the one registry: the new processes count and
// list the old ones, and the old ones the new.
func TestProcessesMigrationOldRelease(t *testing.T) {
	s := newMigrationSetup(t)
	s.up(t)
	st, err := store.Open(t.Context(), s.url, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := t.Context()

	// An old worker refreshes w1 and starts w-old; an old API process
	// refreshes a1 and sees itself alone.
	s.exec(t, oldRegisterWorker, "w1", "box", 42, "v1", 8, 5, s.start, (24 * time.Hour).Seconds())
	s.exec(t, oldRegisterWorker, "w-old", "box", 43, "v1", 2, 0, s.start.Add(time.Second), (24 * time.Hour).Seconds())
	var n int
	if err := s.db.Get(&n, oldRegisterAPIProcess, "a1", "web", 9, s.start, 30.0, (24 * time.Hour).Seconds()); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("old API process: %d live, want 1", n)
	}

	// A new API process counts the old one, and the old one the new.
	if n, err = st.RegisterProcess(ctx, apiProcess("a-new")); err != nil || n != 2 {
		t.Errorf("new API process: %d live, %v; want 2", n, err)
	}
	if err := s.db.Get(&n, oldRegisterAPIProcess, "a1", "web", 9, s.start, 30.0, (24 * time.Hour).Seconds()); err != nil || n != 2 {
		t.Errorf("old API process after the new one: %d live, %v; want 2", n, err)
	}
	ws, err := st.Processes(ctx, store.KindWorker)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 2 || ws[0].ID != "w1" || ws[0].InFlight != 5 || ws[1].ID != "w-old" {
		t.Errorf("workers listed by the new release: %+v, want w1 (5 in flight) and w-old", ws)
	}
	var old []struct {
		ID          string    `db:"id"`
		Host        string    `db:"host"`
		PID         int       `db:"pid"`
		Version     string    `db:"version"`
		Concurrency int       `db:"concurrency"`
		InFlight    int       `db:"in_flight"`
		StartedAt   time.Time `db:"started_at"`
		LastSeenAt  time.Time `db:"last_seen_at"`
	}
	if err := s.db.Select(&old, oldWorkers, 60.0); err != nil || len(old) != 2 {
		t.Errorf("workers listed by the old release: %+v, %v; want 2", old, err)
	}
	if err := s.db.Get(&n, oldCountWorkers, 60.0); err != nil || n != 2 {
		t.Errorf("live workers counted by the old release: %d, %v; want 2", n, err)
	}

	// The old API process's waiter counts against the user's cap on the
	// new one, and goes when the old process unregisters.
	if _, ok, err := st.OpenWaiter(ctx, "u", "a-new", 1); err != nil || ok {
		t.Errorf("new waiter under cap 1 with a1's open: ok %v, %v; want refused", ok, err)
	}
	s.exec(t, oldUnregisterAPIProcess, "a1")
	s.exec(t, oldUnregisterWorker, "w-old")
	if _, ok, err := st.OpenWaiter(ctx, "u", "a-new", 1); err != nil || !ok {
		t.Errorf("new waiter once a1 unregistered: ok %v, %v; want opened", ok, err)
	}
	var ids []string
	if err := s.db.Select(&ids, `SELECT id FROM processes ORDER BY id`); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"a-new", "w1"}, ids); diff != "" {
		t.Errorf("processes after the old ones unregistered (-want +got):\n%s", diff)
	}
}
