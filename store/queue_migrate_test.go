package store_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
)

// queueRow is a job_queue row as the migration should make it.
type queueRow struct {
	ID     uuid.UUID `db:"id"`
	Leased bool      `db:"leased"`
	Due    bool      `db:"due"`
}

// TestQueueMigration: 00012 moves a live queue into job_queue: a PENDING
// job and a retry waiting for its backoff wait there with their run_after,
// a running attempt keeps its lease (and the attempt can still end through
// Finish), finished jobs are not queued, and a job the previous release's
// API cancels leaves the queue; its Down puts the queue back on jobs and the
// previous release's partial indexes with it.
func TestQueueMigration(t *testing.T) {
	url := pgtest.NewDatabase(t)
	db, err := sqlx.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s := migrationSetup{url: url, db: db}
	s.down(t, 12)

	// The previous release's rows, written as it wrote them.
	pending, retry, running, done := uuid.New(), uuid.New(), uuid.New(), uuid.New()
	lease := uuid.New()
	s.exec(t, `INSERT INTO jobs (id, user_id, type, input, status, attempts, run_after, lease_owner, lease_expires_at, started_at, result, completed_at)
		VALUES ($1, 'alice', 'AI_PREVIEW', '{}', 'PENDING', 0, now() - interval '1 minute', NULL, NULL, NULL, NULL, NULL),
		       ($2, 'alice', 'AI_PREVIEW', '{}', 'PROCESSING', 1, now() + interval '1 hour', NULL, NULL, now(), NULL, NULL),
		       ($3, 'bob', 'AI_PREVIEW', '{}', 'PROCESSING', 1, now() - interval '1 minute', $5, now() + interval '1 hour', now(), NULL, NULL),
		       ($4, 'bob', 'AI_PREVIEW', '{}', 'COMPLETED', 1, now() - interval '1 minute', NULL, NULL, now(), '{}', now())`,
		pending, retry, running, done, lease)

	s.up(t)
	var got []queueRow
	if err := db.Select(&got, `SELECT id, lease_owner IS NOT NULL AS leased, run_after <= now() AS due FROM job_queue ORDER BY id`); err != nil {
		t.Fatal(err)
	}
	want := []queueRow{{ID: pending, Due: true}, {ID: retry}, {ID: running, Leased: true, Due: true}}
	slices.SortFunc(want, func(a, b queueRow) int { return strings.Compare(a.ID.String(), b.ID.String()) })
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("job_queue after up (-want +got):\n%s", diff)
	}

	st, err := store.Open(t.Context(), url, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ended, err := st.Finish(t.Context(), []store.Outcome{{ID: running, Lease: lease, Kind: store.OutcomeCompleted, Result: []byte(`{"output":"ok"}`)}})
	if err != nil || !ended[running] {
		t.Fatalf("finish the attempt that ran across the migration: %v, %v", ended, err)
	}
	// A cancel by an API process of the previous release, which updates
	// jobs alone, takes the job out of the queue too (its trigger).
	cancelled := uuid.New()
	s.exec(t, `INSERT INTO jobs (id, user_id, type, input) VALUES ($1, 'carol', 'AI_PREVIEW', '{}')`, cancelled)
	s.exec(t, `UPDATE jobs SET status = 'FAILED', error = 'Cancelled by user', cancelled_by = 'carol',
		completed_at = now(), updated_at = now(), version = version + 1 WHERE id = $1`, cancelled)
	claimed, _, err := st.Claim(t.Context(), store.ClaimRequest{Worker: "w", N: 10, Lease: time.Minute})
	if err != nil || len(claimed) != 1 || claimed[0].ID != pending {
		t.Fatalf("claim after up: %v, %v; want only %v", claimed, err, pending)
	}

	s.down(t, 12)
	var leased, indexes int
	if err := db.Get(&leased, `SELECT count(*) FROM jobs WHERE id = $1 AND lease_owner IS NOT NULL AND lease_expires_at > now()`, pending); err != nil {
		t.Fatal(err)
	}
	if err := db.Get(&indexes, `SELECT count(*) FROM pg_indexes WHERE tablename = 'jobs'
		AND indexname IN ('jobs_claimable_idx', 'jobs_user_claimable_idx', 'jobs_lease_idx')`); err != nil {
		t.Fatal(err)
	}
	if leased != 1 || indexes != 3 {
		t.Errorf("after down: %d leased rows for the claimed job (want 1), %d queue indexes on jobs (want 3)", leased, indexes)
	}
	s.up(t)
	j, err := st.Get(t.Context(), store.OwnedBy("alice"), pending)
	if err != nil || j.Status != job.StatusProcessing {
		t.Errorf("after up again: %+v, %v", j, err)
	}
}
