package store_test

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/store"
)

// TestDeleteFinished: finished jobs created before the cut-off go, in
// batches; unfinished and newer ones stay; a second process holding the
// retention lock makes the call a no-op.
func TestDeleteFinished(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	old := time.Now().Add(-48 * time.Hour)
	insert := func(created time.Time, status string) uuid.UUID {
		t.Helper()
		id := store.FirstIDAt(created)
		id[15] = byte(len(status)) ^ byte(created.Unix()) // distinct ids within a millisecond
		id[14] = byte(created.Nanosecond())
		_, err := st.DB().Exec(`INSERT INTO jobs (id, user_id, type, status, input, result, error, attempts, created_at, started_at, completed_at)
			VALUES ($1, 'alice', 'AI_PREVIEW', $2, '{}',
				CASE WHEN $2 = 'COMPLETED' THEN '{}'::jsonb END, CASE WHEN $2 = 'FAILED' THEN 'x' END,
				CASE WHEN $2 = 'PENDING' THEN 0 ELSE 1 END, $3,
				CASE WHEN $2 <> 'PENDING' THEN $3::timestamptz END, CASE WHEN $2 IN ('COMPLETED', 'FAILED') THEN $3::timestamptz END)`,
			id, status, created)
		if err != nil {
			t.Fatal(err)
		}
		// Each job has an attempt log entry, which goes with it.
		if _, err := st.DB().Exec(`INSERT INTO job_attempts (job_id, attempt, type, outcome, final) VALUES ($1, 1, 'AI_PREVIEW', 'retried', false)`, id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	var doomed []uuid.UUID
	for i := range 5 {
		doomed = append(doomed, insert(old.Add(time.Duration(i)*time.Second), "COMPLETED"))
	}
	doomed = append(doomed, insert(old.Add(10*time.Second), "FAILED"))
	kept := []uuid.UUID{
		insert(old.Add(20*time.Second), "PENDING"),
		insert(old.Add(21*time.Second), "PROCESSING"),
		insert(time.Now().Add(-time.Hour), "COMPLETED"),
	}
	cut := time.Now().Add(-24 * time.Hour)

	// Another process is deleting: nothing happens here.
	tx, err := st.DB().Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`SELECT pg_advisory_xact_lock($1)`, int64(0x6a6f627372657421)); err != nil {
		t.Fatal(err)
	}
	if n, err := st.DeleteFinished(ctx, cut, 100); err != nil || n != 0 {
		t.Errorf("with the lock held elsewhere: deleted %d, %v; want 0", n, err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}

	// Batches of 4: 4, then the last 2, then none.
	for _, want := range []int{4, 2, 0} {
		if n, err := st.DeleteFinished(ctx, cut, 4); err != nil || n != want {
			t.Errorf("deleted %d, %v; want %d", n, err, want)
		}
	}
	exists := func(id uuid.UUID) bool {
		var n, logged int
		if err := st.DB().Get(&n, `SELECT count(*) FROM jobs WHERE id = $1`, id); err != nil {
			t.Fatal(err)
		}
		if err := st.DB().Get(&logged, `SELECT count(*) FROM job_attempts WHERE job_id = $1`, id); err != nil {
			t.Fatal(err)
		}
		if logged != n {
			t.Errorf("job %v: %d rows, %d attempt log entries", id, n, logged)
		}
		return n == 1
	}
	for _, id := range doomed {
		if exists(id) {
			t.Errorf("old finished job %v kept", id)
		}
	}
	for _, id := range kept {
		if !exists(id) {
			t.Errorf("job %v deleted (unfinished, or newer than the cut-off)", id)
		}
	}
}

// TestFirstIDAt: a UUIDv7 made at a time sorts at or above FirstIDAt of
// that time, and below FirstIDAt of a later millisecond.
func TestFirstIDAt(t *testing.T) {
	for range 100 {
		id, err := uuid.NewV7()
		if err != nil {
			t.Fatal(err)
		}
		sec, nsec := id.Time().UnixTime()
		made := time.Unix(sec, nsec)
		if lo := store.FirstIDAt(made.Truncate(time.Millisecond)); string(id[:]) < string(lo[:]) {
			t.Errorf("%v sorts below FirstIDAt of its own millisecond %v", id, lo)
		}
		if hi := store.FirstIDAt(made.Add(time.Millisecond)); string(id[:]) >= string(hi[:]) {
			t.Errorf("%v does not sort below FirstIDAt of the next millisecond %v", id, hi)
		}
	}
}

// TestIdempotencyWindow: a key binds to its job for IdempotencyWindow; after
// that the same key (even with another body) creates a new job, and the old
// job no longer carries the key.
func TestIdempotencyWindow(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	nj := store.NewJob{UserID: "alice", Type: store.TypeAIPreview, Input: []byte(`{"prompt":"x"}`),
		IdempotencyScope: "preview", IdempotencyKey: "k1", RequestHash: []byte("h1")}
	first, replayed, err := st.Create(ctx, nj)
	if err != nil || replayed {
		t.Fatalf("first: %v %v", replayed, err)
	}
	if again, replayed, err := st.Create(ctx, nj); err != nil || !replayed || again.ID != first.ID {
		t.Fatalf("within the window: %v replayed %v, %v; want the first job", again, replayed, err)
	}
	if _, err := st.DB().Exec(`UPDATE jobs SET created_at = now() - interval '25 hours' WHERE id = $1`, first.ID); err != nil {
		t.Fatal(err)
	}
	nj.RequestHash = []byte("h2") // another body: no conflict once the window has passed
	second, replayed, err := st.Create(ctx, nj)
	if err != nil || replayed || second.ID == first.ID {
		t.Fatalf("after the window: %+v replayed %v, %v; want a new job", second, replayed, err)
	}
	var key *string
	if err := st.DB().Get(&key, `SELECT idempotency_key FROM jobs WHERE id = $1`, first.ID); err != nil || key != nil {
		t.Errorf("the old job still holds the key: %v, %v", key, err)
	}
}
