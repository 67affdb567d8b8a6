package faults

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/jobsd/jobsd/internal/eventually"
)

// The audit: the jobs table and a history of every change to its rows,
// checked after each fault.

// openDirect opens a connection pool to the test database that bypasses
// every proxy.
func openDirect(t testing.TB, dbURL string) *sqlx.DB {
	t.Helper()
	db, err := sqlx.Open("postgres", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// installHistory records every change of every job row (a trigger the
// service knows nothing about), so that the audit can see transitions the
// final row no longer shows: a second completion, a write by a stale lease.
func installHistory(t testing.TB, db *sqlx.DB) {
	t.Helper()
	for _, stmt := range []string{
		`CREATE TABLE job_history (
			seq bigserial PRIMARY KEY, job_id uuid NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp(),
			old_status text, new_status text, old_lease uuid, new_lease uuid,
			old_attempts int, new_attempts int, new_updated_at timestamptz, new_run_after timestamptz, new_error text)`,
		`CREATE FUNCTION record_job_history() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			INSERT INTO job_history (job_id, old_status, new_status, old_lease, new_lease, old_attempts, new_attempts, new_updated_at, new_run_after, new_error)
			VALUES (NEW.id, OLD.status, NEW.status, OLD.lease_owner, NEW.lease_owner, OLD.attempts, NEW.attempts, NEW.updated_at, NEW.run_after, NEW.error);
			RETURN NULL;
		END $$`,
		`CREATE TRIGGER record_job_history AFTER UPDATE ON jobs FOR EACH ROW
			WHEN (OLD.version IS DISTINCT FROM NEW.version OR OLD.lease_owner IS DISTINCT FROM NEW.lease_owner)
			EXECUTE FUNCTION record_job_history()`,
	} {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("install history: %v", err)
		}
	}
}

// waitAllTerminal waits until no job of the database is unfinished.
func waitAllTerminal(t testing.TB, db *sqlx.DB, within time.Duration) {
	t.Helper()
	err := eventually.Wait(within, func() error {
		left, err := unfinished(db)
		if err == nil && left > 0 {
			err = fmt.Errorf("%d jobs still unfinished", left)
		}
		return err
	})
	if err != nil {
		var rows []struct {
			Status   string `db:"status"`
			Attempts int    `db:"attempts"`
			N        int    `db:"n"`
		}
		listErr := db.Select(&rows, `SELECT status, attempts, count(*) AS n FROM jobs WHERE status NOT IN ('COMPLETED', 'FAILED') GROUP BY 1, 2`)
		t.Fatalf("after %v: %v: %+v (listing them: %v)", within, err, rows, listErr)
	}
}

// unfinished counts the jobs not yet COMPLETED or FAILED.
func unfinished(db *sqlx.DB) (int, error) {
	var n int
	err := db.Get(&n, `SELECT count(*) FROM jobs WHERE status NOT IN ('COMPLETED', 'FAILED')`)
	return n, err
}

type auditReport struct {
	Jobs, Completed, Failed, Claims int
	Errors                          map[string]int
}

func (a auditReport) String() string {
	return fmt.Sprintf("%d jobs: %d COMPLETED, %d FAILED %v; %d claims (handler starts)", a.Jobs, a.Completed, a.Failed, a.Errors, a.Claims)
}

// audit checks every job: known ids all exist, each job is in exactly one
// terminal state reached exactly once and never left, attempts within
// max_attempts, timestamps in order, and every worker outcome written by
// the holder of the job's newest lease, every attempt counted by a claim
// that wrote PROCESSING with a lease.
func audit(t testing.TB, db *sqlx.DB, known []uuid.UUID) auditReport {
	t.Helper()
	ids := make([]string, len(known))
	for i, id := range known {
		ids[i] = id.String()
	}
	checks := []struct{ what, query string }{
		{"unfinished jobs", `SELECT count(*) FROM jobs WHERE status NOT IN ('COMPLETED', 'FAILED')`},
		{"created jobs missing from the table", `SELECT count(*) FROM unnest($1::uuid[]) AS k(id) LEFT JOIN jobs j ON j.id = k.id WHERE j.id IS NULL`},
		{"jobs with attempts > max_attempts", `SELECT count(*) FROM jobs WHERE attempts > max_attempts`},
		{"COMPLETED jobs without result, with error or never attempted", `SELECT count(*) FROM jobs WHERE status = 'COMPLETED' AND (result IS NULL OR error IS NOT NULL OR attempts < 1 OR started_at IS NULL)`},
		{"FAILED jobs without error", `SELECT count(*) FROM jobs WHERE status = 'FAILED' AND error IS NULL`},
		{"jobs with timestamps out of order", `SELECT count(*) FROM jobs WHERE NOT (
			created_at <= updated_at AND (started_at IS NULL OR (created_at <= started_at AND started_at <= updated_at))
			AND (completed_at IS NULL OR ((started_at IS NULL OR started_at <= completed_at) AND completed_at <= updated_at)))`},
		{"jobs never started that are not cancelled", `SELECT count(*) FROM jobs WHERE started_at IS NULL AND NOT (status = 'FAILED' AND error = 'Cancelled by user')`},
		{"jobs finished more than once", `SELECT count(*) FROM (SELECT job_id FROM job_history
			WHERE new_status IN ('COMPLETED', 'FAILED') AND old_status NOT IN ('COMPLETED', 'FAILED') GROUP BY job_id HAVING count(*) > 1) d`},
		{"changes to finished jobs", `SELECT count(*) FROM job_history WHERE old_status IN ('COMPLETED', 'FAILED')`},
		{"jobs whose final state differs from their last transition", `SELECT count(*) FROM jobs j JOIN LATERAL (
			SELECT new_status FROM job_history h WHERE h.job_id = j.id ORDER BY seq DESC LIMIT 1) h ON true WHERE h.new_status <> j.status`},
		{"worker outcomes written without the newest lease (a taken-over lease)", `SELECT count(*) FROM job_history h
			WHERE h.old_lease IS NOT NULL AND h.new_lease IS NULL AND h.new_error IS DISTINCT FROM 'Cancelled by user'
			  AND h.new_error IS DISTINCT FROM 'Worker lost while processing the job'
			  AND h.old_lease IS DISTINCT FROM (SELECT c.new_lease FROM job_history c
				WHERE c.job_id = h.job_id AND c.seq < h.seq AND c.new_attempts = c.old_attempts + 1 ORDER BY c.seq DESC LIMIT 1)`},
		// Claims are committed before handlers run: a completion is always
		// written by the holder of a lease, and every counted attempt was a
		// claim that wrote PROCESSING with a lease.
		{"completions not under a lease", `SELECT count(*) FROM job_history
			WHERE new_status = 'COMPLETED' AND old_status <> 'COMPLETED' AND old_lease IS NULL`},
		{"attempts counted without a claim (PROCESSING and a lease)", `SELECT count(*) FROM job_history
			WHERE new_attempts > old_attempts AND (new_lease IS NULL OR new_status <> 'PROCESSING')`},
	}
	for _, c := range checks {
		var n int
		var err error
		if strings.Contains(c.query, "$1") {
			err = db.Get(&n, c.query, "{"+strings.Join(ids, ",")+"}")
		} else {
			err = db.Get(&n, c.query)
		}
		if err != nil {
			t.Errorf("audit %s: %v", c.what, err)
		} else if n != 0 {
			t.Errorf("audit: %d %s", n, c.what)
		}
	}
	rep := auditReport{Errors: map[string]int{}}
	if err := errors.Join(
		db.Get(&rep.Jobs, `SELECT count(*) FROM jobs`),
		db.Get(&rep.Completed, `SELECT count(*) FROM jobs WHERE status = 'COMPLETED'`),
		db.Get(&rep.Failed, `SELECT count(*) FROM jobs WHERE status = 'FAILED'`),
		db.Get(&rep.Claims, `SELECT count(*) FROM job_history WHERE new_attempts = old_attempts + 1`),
	); err != nil {
		t.Errorf("audit counts: %v", err)
	}
	var errs []struct {
		E string `db:"error"`
		N int    `db:"n"`
	}
	if err := db.Select(&errs, `SELECT error, count(*) AS n FROM jobs WHERE error IS NOT NULL GROUP BY error`); err != nil {
		t.Errorf("audit errors: %v", err)
	}
	for _, e := range errs {
		rep.Errors[e.E] = e.N
	}
	return rep
}
