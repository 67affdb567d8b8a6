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

// queueRow is a job_queue row as the migrations should make it.
type queueRow struct {
	ID  uuid.UUID `db:"id"`
	Due bool      `db:"due"`
}

// TestQueueMigration: 00012 and 00013 move a live queue of the one-table
// release into job_queue and job_leases: a PENDING job and a retry waiting
// for its backoff wait in job_queue with their run_after, a running attempt
// keeps its lease as a claim of its own (and the attempt can still end
// through Finish), finished jobs are not queued, and a job the previous
// release's API cancels leaves the queue. The Downs put a claimed job back
// under a per-job lease (00013) and the queue back on jobs with the
// previous release's partial indexes (00012).
func TestQueueMigration(t *testing.T) {
	s := newMigrationDB(t)
	db := s.db
	s.downTo(t, 11)

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
	if err := db.Select(&got, `SELECT id, run_after <= now() AS due FROM job_queue ORDER BY id`); err != nil {
		t.Fatal(err)
	}
	want := []queueRow{{ID: pending, Due: true}, {ID: retry}}
	slices.SortFunc(want, func(a, b queueRow) int { return strings.Compare(a.ID.String(), b.ID.String()) })
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("job_queue after up (-want +got):\n%s", diff)
	}
	var claims []string
	if err := db.Select(&claims, `SELECT lease::text || ' ' || array_to_string(ids, ',') FROM job_leases`); err != nil {
		t.Fatal(err)
	}
	if want := []string{lease.String() + " " + running.String()}; !slices.Equal(claims, want) {
		t.Errorf("job_leases after up: %v, want %v", claims, want)
	}

	st := s.open(t)
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

	s.downTo(t, 12)
	var queued int
	if err := db.Get(&queued, `SELECT count(*) FROM job_queue q JOIN jobs j ON j.id = q.id
		WHERE q.id = $1 AND q.lease_owner = j.lease_owner AND q.lease_expires_at > now()`, pending); err != nil {
		t.Fatal(err)
	}
	if queued != 1 {
		t.Errorf("after 00013's down: the claimed job has %d queue rows under its lease, want 1", queued)
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

// newMigrationDB is a fresh database migrated to the newest version.
func newMigrationDB(t *testing.T) migrationSetup {
	t.Helper()
	url := pgtest.NewDatabase(t)
	db, err := sqlx.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return migrationSetup{url: url, db: db}
}

// open opens a store on the database, closed when the test ends.
func (s migrationSetup) open(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(t.Context(), s.url, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestCompletionsMigration: after 00014 a completion writes no attempt-log
// entry (the job row and job_completions record it) and the admin API still
// lists it; 00014's Down writes the entries the previous release reads.
func TestCompletionsMigration(t *testing.T) {
	s := newMigrationDB(t)
	db := s.db
	st := s.open(t)
	ctx := t.Context()
	j := completeOne(t, st)
	logged := func() int {
		var n int
		if err := db.Get(&n, `SELECT count(*) FROM job_attempts WHERE job_id = $1 AND outcome = 'completed' AND worker_id = 'w1'`, j.ID); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := logged(); n != 0 {
		t.Errorf("%d attempt-log entries for a completion, want none", n)
	}
	attempts, err := st.Attempts(ctx, j.ID)
	if err != nil || len(attempts) != 1 || attempts[0].Outcome != store.AttemptOutcome("completed") || attempts[0].EndedAt == nil ||
		attempts[0].WorkerID == nil || *attempts[0].WorkerID != "w1" || attempts[0].Attempt != 1 {
		t.Errorf("attempts of the completed job: %+v, %v", attempts, err)
	}
	s.downTo(t, 13)
	if n := logged(); n != 1 {
		t.Errorf("after 00014's down: %d attempt-log entries for the completion, want 1", n)
	}
	s.up(t)
	if again, err := st.Attempts(ctx, j.ID); err != nil || len(again) != 1 {
		t.Errorf("after up again: %+v, %v (the logged entry, not twice)", again, err)
	}
}

// TestWebhookOutboxMigration: 00017 strands nothing. A PENDING delivery
// queued by the former outcome statement is claimed by the retry path
// after the upgrade; an event still in the outbox when 00017 is undone
// becomes a PENDING delivery the former release sends; and the foreign
// key comes back.
func TestWebhookOutboxMigration(t *testing.T) {
	s := newMigrationDB(t)
	db := s.db
	st := s.open(t)
	ctx := t.Context()
	s.downTo(t, 16)
	var endpoint uuid.UUID
	if err := db.Get(&endpoint, `INSERT INTO webhook_endpoints (id, user_id, url, event_types, secret)
		VALUES (gen_random_uuid(), 'alice', 'https://hooks.example/alice', ARRAY['job.completed', 'job.failed'], '\x00'::bytea) RETURNING id`); err != nil {
		t.Fatal(err)
	}
	var old uuid.UUID
	if err := db.Get(&old, `INSERT INTO webhook_deliveries (endpoint_id, event_type) VALUES ($1, 'webhook.test') RETURNING id`, endpoint); err != nil {
		t.Fatal(err)
	}
	s.up(t)
	due, err := st.ClaimDeliveries(ctx, 10, 10, nil, time.Second)
	if err != nil || len(due) != 1 || due[0].ID != old {
		t.Fatalf("the delivery queued before the upgrade: %+v, %v", due, err)
	}

	j := completeOne(t, st)
	s.downTo(t, 16)
	var pending int
	if err := db.Get(&pending, `SELECT count(*) FROM webhook_deliveries WHERE job_id = $1 AND endpoint_id = $2 AND status = 'PENDING' AND event_type = 'job.completed'`, j.ID, endpoint); err != nil || pending != 1 {
		t.Fatalf("after 00017's down: %d PENDING deliveries of the outbox's event, want 1 (%v)", pending, err)
	}
	var fk int
	if err := db.Get(&fk, `SELECT count(*) FROM pg_constraint WHERE conname = 'webhook_deliveries_endpoint_id_fkey'`); err != nil || fk != 1 {
		t.Errorf("after 00017's down: %d foreign keys, want 1 (%v)", fk, err)
	}
	s.up(t)
}

// completeOne creates one of alice's jobs and completes it as worker w1.
func completeOne(t *testing.T, st *store.Store) *job.Job {
	t.Helper()
	ctx := t.Context()
	j, _, err := st.Create(ctx, store.NewJob{UserID: "alice", Type: job.TypeAIPreview, Input: []byte(`{"prompt":"x"}`)})
	if err != nil {
		t.Fatal(err)
	}
	claimed, _, err := st.Claim(ctx, store.ClaimRequest{Worker: "w1", N: 1, Lease: time.Minute})
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim: %v, %v", claimed, err)
	}
	if _, err := st.Finish(ctx, []store.Outcome{{ID: j.ID, Lease: claimed[0].Lease, Kind: store.OutcomeCompleted, Result: []byte(`{}`)}}); err != nil {
		t.Fatal(err)
	}
	return j
}
