package store_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
)

// newOutboxStore opens a store whose Create writes outbox rows.
func newOutboxStore(t *testing.T) *store.Store {
	t.Helper()
	st, _ := pgtest.NewStoreWith(t, store.Options{Outbox: true})
	return st
}

func createJob(t *testing.T, st *store.Store, nj store.NewJob) *job.Job {
	t.Helper()
	if nj.UserID == "" {
		nj.UserID = "alice"
	}
	if nj.Type == "" {
		nj.Type, nj.Input = job.TypeAIPreview, []byte(`{"prompt":"x"}`)
	}
	j, _, err := st.Create(t.Context(), nj)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// outboxJobs lists the job ids of the unsent outbox rows, oldest first.
func outboxJobs(t *testing.T, st *store.Store) []uuid.UUID {
	t.Helper()
	var ids []uuid.UUID
	if err := st.DB().Select(&ids, `SELECT job_id FROM outbox ORDER BY id`); err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestCreateWritesOutbox: with the outbox on, each created job has one row,
// written by the creating statement; an idempotent replay writes none; with
// it off, Create writes none.
func TestCreateWritesOutbox(t *testing.T) {
	st := newOutboxStore(t)
	a := createJob(t, st, store.NewJob{})
	keyed := store.NewJob{IdempotencyScope: "create", IdempotencyKey: "k1", RequestHash: []byte("h")}
	b := createJob(t, st, keyed)
	if again := createJob(t, st, keyed); again.ID != b.ID {
		t.Fatalf("replay made a new job %v, want %v", again.ID, b.ID)
	}
	if got, want := outboxJobs(t, st), []uuid.UUID{a.ID, b.ID}; !slices.Equal(got, want) {
		t.Errorf("outbox = %v, want %v", got, want)
	}
	select {
	case <-st.OutboxWritten():
	default:
		t.Error("OutboxWritten did not fire after Create")
	}

	plain, _ := pgtest.NewStore(t)
	createJob(t, plain, store.NewJob{})
	if got := outboxJobs(t, plain); len(got) != 0 {
		t.Errorf("outbox off: rows %v", got)
	}
}

// TestSendOutbox: sent rows are deleted, refused ones stay for the next
// sweep, and a send that fails outright deletes nothing.
func TestSendOutbox(t *testing.T) {
	st := newOutboxStore(t)
	ctx := t.Context()
	var jobs []uuid.UUID
	for range 3 {
		jobs = append(jobs, createJob(t, st, store.NewJob{}).ID)
	}
	boom := errors.New("queue refused")
	n, err := st.SendOutbox(ctx, 10, func(context.Context, []store.OutboxMessage) ([]int64, error) { return nil, boom })
	if n != 0 || !errors.Is(err, boom) {
		t.Fatalf("failed send: n=%d err=%v", n, err)
	}
	if got := outboxJobs(t, st); len(got) != 3 {
		t.Fatalf("after a failed send: %d rows, want 3", len(got))
	}
	var seen []uuid.UUID
	n, err = st.SendOutbox(ctx, 10, func(_ context.Context, msgs []store.OutboxMessage) ([]int64, error) {
		var sent []int64
		for _, m := range msgs {
			seen = append(seen, m.JobID)
			if m.Delay != 0 {
				t.Errorf("job %v: delay %v, want 0 for a new job", m.JobID, m.Delay)
			}
			if m.JobID != jobs[1] {
				sent = append(sent, m.Seq)
			}
		}
		return sent, boom
	})
	if n != 2 || !errors.Is(err, boom) {
		t.Fatalf("partial send: n=%d err=%v", n, err)
	}
	if !slices.Equal(seen, jobs) {
		t.Errorf("sent %v, want %v in creation order", seen, jobs)
	}
	if got := outboxJobs(t, st); !slices.Equal(got, jobs[1:2]) {
		t.Errorf("left %v, want the refused %v", got, jobs[1])
	}
}

// TestClaimIDs: only the named jobs that are runnable are claimed, with
// Claim's effects; finished, held and waiting jobs are left, and Waiting
// tells how long the waiting one has left.
func TestClaimIDs(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	db := st.DB()
	runnable := createJob(t, st, store.NewJob{MaxAttempts: 2})
	other := createJob(t, st, store.NewJob{}) // not named: stays PENDING
	held := createJob(t, st, store.NewJob{})
	waiting := createJob(t, st, store.NewJob{})
	done := createJob(t, st, store.NewJob{})
	if _, err := db.Exec(`WITH q AS (DELETE FROM job_queue WHERE id = $1),
		l AS (INSERT INTO job_leases (lease, worker_id, expires_at, ids)
			VALUES (gen_random_uuid(), 'other', now() + interval '1 minute', ARRAY[$1::uuid]) RETURNING lease)
		UPDATE jobs SET status = 'PROCESSING', lease_owner = (SELECT lease FROM l) WHERE id = $1`, held.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`WITH q AS (UPDATE job_queue SET run_after = now() + interval '90 seconds' WHERE id = $1) UPDATE jobs SET run_after = now() + interval '90 seconds' WHERE id = $1`, waiting.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`WITH q AS (DELETE FROM job_queue WHERE id = $1) UPDATE jobs SET status = 'COMPLETED', result = '{}', completed_at = now() WHERE id = $1`, done.ID); err != nil {
		t.Fatal(err)
	}
	ids := []uuid.UUID{runnable.ID, held.ID, waiting.ID, done.ID, runnable.ID, uuid.New()}
	got, err := st.ClaimIDs(ctx, "lambda-1", ids, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != runnable.ID || got[0].Attempts != 1 || got[0].MaxAttempts != 2 || got[0].Lease == uuid.Nil {
		t.Fatalf("claimed %+v, want only %v at attempt 1", got, runnable.ID)
	}
	var row struct {
		Status   string  `db:"status"`
		WorkerID *string `db:"worker_id"`
		Leased   bool    `db:"leased"`
		Started  bool    `db:"started"`
	}
	if err := db.Get(&row, `SELECT status, worker_id, (SELECT l.expires_at > now() FROM job_leases l WHERE l.lease = j.lease_owner) AS leased, started_at IS NOT NULL AS started FROM jobs j WHERE id = $1`, runnable.ID); err != nil {
		t.Fatal(err)
	}
	if row.Status != "PROCESSING" || row.WorkerID == nil || *row.WorkerID != "lambda-1" || !row.Leased || !row.Started {
		t.Errorf("claimed row: %+v", row)
	}
	if again, err := st.ClaimIDs(ctx, "lambda-2", []uuid.UUID{runnable.ID}, time.Minute); err != nil || len(again) != 0 {
		t.Errorf("second claim of a held job: %v, %v", again, err)
	}
	if j, err := st.Get(ctx, store.OwnedBy("alice"), other.ID); err != nil || j.Status != job.StatusPending {
		t.Errorf("unnamed job: %+v, %v", j, err)
	}

	w, err := st.Waiting(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != 1 || w[waiting.ID] < 80*time.Second || w[waiting.ID] > 90*time.Second {
		t.Errorf("waiting = %v, want only %v with about 90s left", w, waiting.ID)
	}
}

// TestRescueToOutbox: an expired lease is rescued as Rescue does it, and a
// job returned to the queue gets an outbox row due when its backoff ends; a
// job past its last attempt fails and gets none.
func TestRescueToOutbox(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	again := createJob(t, st, store.NewJob{MaxAttempts: 3})
	last := createJob(t, st, store.NewJob{MaxAttempts: 1})
	if _, err := st.ClaimIDs(ctx, "lost", []uuid.UUID{again.ID, last.ID}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := st.DB().Exec(`UPDATE job_leases SET expires_at = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	retried, failed, err := st.RescueToOutbox(ctx, 30*time.Second)
	if err != nil || retried != 1 || failed != 1 {
		t.Fatalf("rescue: retried %d failed %d, %v", retried, failed, err)
	}
	if got := outboxJobs(t, st); !slices.Equal(got, []uuid.UUID{again.ID}) {
		t.Errorf("outbox = %v, want only the retried %v", got, again.ID)
	}
	var delays []time.Duration
	if _, err := st.SendOutbox(ctx, 10, func(_ context.Context, msgs []store.OutboxMessage) ([]int64, error) {
		for _, m := range msgs {
			delays = append(delays, m.Delay)
		}
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(delays) != 1 || delays[0] < 20*time.Second || delays[0] > 30*time.Second {
		t.Errorf("delays = %v, want one of about 30s (the backoff)", delays)
	}
	if j, err := st.Get(ctx, store.OwnedBy("alice"), last.ID); err != nil || j.Status != job.StatusFailed || *j.Error != job.ErrTextWorkerLost {
		t.Errorf("last attempt: %+v, %v", j, err)
	}
	var logged []string
	if err := st.DB().Select(&logged, `SELECT job_id || ':' || attempt || ':' || outcome || ':' || final FROM job_attempts ORDER BY job_id`); err != nil {
		t.Fatal(err)
	}
	want := []string{again.ID.String() + ":1:lost:false", last.ID.String() + ":1:lost:true"}
	slices.Sort(want)
	if !slices.Equal(logged, want) {
		t.Errorf("attempt log %v, want %v (as Rescue logs it)", logged, want)
	}
}

// TestClaimIDsMatchesClaim: a job claimed by id ends in the same state as
// one claimed from the queue, column for column (but for those that hold
// ids and times), so the two claims cannot drift apart unnoticed.
func TestClaimIDsMatchesClaim(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	fromQueue := createJob(t, st, store.NewJob{})
	if got, _, err := st.Claim(ctx, store.ClaimRequest{Worker: "w", N: 1, Lease: time.Minute}); err != nil || len(got) != 1 || got[0].ID != fromQueue.ID {
		t.Fatalf("Claim: %v, %v", got, err)
	}
	byID := createJob(t, st, store.NewJob{})
	if got, err := st.ClaimIDs(ctx, "w", []uuid.UUID{byID.ID}, time.Minute); err != nil || len(got) != 1 {
		t.Fatalf("ClaimIDs: %v, %v", got, err)
	}
	row := func(id uuid.UUID) string {
		t.Helper()
		// Times become whether they are set; ids, times' values and the
		// lease owner differ by nature.
		var s string
		err := st.DB().Get(&s, `
			SELECT (SELECT jsonb_object_agg(key, CASE
					WHEN key IN ('id', 'lease_owner') THEN to_jsonb(value IS NOT NULL)
					WHEN jsonb_typeof(value) = 'string' AND value #>> '{}' ~ '^\d{4}-\d\d-\d\dT' THEN to_jsonb(true)
					ELSE value END)
				FROM jsonb_each(to_jsonb(j)))::text
			FROM jobs j WHERE id = $1`, id)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if a, b := row(fromQueue.ID), row(byID.ID); a != b {
		t.Errorf("Claim and ClaimIDs leave different rows:\nClaim:    %s\nClaimIDs: %s", a, b)
	}
}
