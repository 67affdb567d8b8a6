package store_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/internal/eventually"
	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
)

// TestBatchedReads: Gets that queue behind a busy read leave together in one
// statement, and each still gets exactly its own answer: its job, or
// ErrNotFound for a missing id and for another user's job.
func TestBatchedReads(t *testing.T) {
	ctx := t.Context()
	st := oneSlotStore(t)
	type want struct {
		user string
		id   uuid.UUID
		job  *job.Job // nil: ErrNotFound
	}
	var wants []want
	for i := range 20 {
		user := []string{"alice", "bob"}[i%2]
		j, _, err := st.Create(ctx, store.NewJob{UserID: user, Type: job.TypeAIPreview, Input: []byte(`{"prompt":"x"}`)})
		if err != nil {
			t.Fatal(err)
		}
		other := map[string]string{"alice": "bob", "bob": "alice"}[user]
		wants = append(wants, want{user, j.ID, j}, want{other, j.ID, nil}, want{user, uuid.New(), nil})
	}

	// Hold the table so that the first Get blocks inside its statement,
	// holding the only batch slot, while the others queue.
	tx := lockJobs(t, st)
	before := st.Gets()
	errs := make([]error, len(wants))
	got := make([]*job.Job, len(wants))
	var wg sync.WaitGroup
	wg.Go(func() { got[0], errs[0] = st.Get(ctx, store.OwnedBy(wants[0].user), wants[0].id) })
	eventually.True(t, 5*time.Second, "the first Get's statement sent", func() bool { return st.Gets() == before+1 })
	for i := 1; i < len(wants); i++ {
		wg.Go(func() { got[i], errs[i] = st.Get(ctx, store.OwnedBy(wants[i].user), wants[i].id) })
	}
	eventually.True(t, 5*time.Second, "the other Gets queued", func() bool { return st.QueuedReads() == len(wants)-1 })
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	if n := st.Gets() - before; n != 2 {
		t.Errorf("%d statements for %d Gets, want 2 (the first alone, then all that queued)", n, len(wants))
	}
	for i, w := range wants {
		switch {
		case w.job == nil && !errors.Is(errs[i], store.ErrNotFound):
			t.Errorf("Get(%s, %s) = %v, %v; want ErrNotFound", w.user, w.id, got[i], errs[i])
		case w.job != nil && (errs[i] != nil || got[i].ID != w.id || got[i].UserID != w.user || got[i].Version != w.job.Version):
			t.Errorf("Get(%s, %s) = %+v, %v; want %+v", w.user, w.id, got[i], errs[i], w.job)
		}
	}
}

// TestBatchedReadCancel: a Get whose context ends while it waits for a slot
// returns at once with that error; the read in flight is unaffected.
func TestBatchedReadCancel(t *testing.T) {
	ctx := t.Context()
	st := oneSlotStore(t)
	j, _, err := st.Create(ctx, store.NewJob{UserID: "alice", Type: job.TypeAIPreview, Input: []byte(`{"prompt":"x"}`)})
	if err != nil {
		t.Fatal(err)
	}
	tx := lockJobs(t, st)
	before := st.Gets()
	var first error
	var wg sync.WaitGroup
	wg.Go(func() { _, first = st.Get(ctx, store.OwnedBy("alice"), j.ID) })
	eventually.True(t, 5*time.Second, "the first Get's statement sent", func() bool { return st.Gets() == before+1 })

	waitCtx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := st.Get(waitCtx, store.OwnedBy("alice"), j.ID); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("queued Get past its deadline: %v, want context.DeadlineExceeded", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if first != nil {
		t.Errorf("the read in flight: %v", first)
	}
}

// TestSlowBatchOpensASecondSlot: with two read slots, a Get that arrives
// while a batch is in flight queues behind it (one batch at a time makes the
// largest batches) until that batch has run for the slow-read bound; then it
// gets a statement of its own on the second slot though no other Get
// arrives (the rescue timer), and a third Get, with both slots busy, queues
// until one ends.
func TestSlowBatchOpensASecondSlot(t *testing.T) {
	ctx := t.Context()
	st, _ := pgtest.NewStoreWith(t, store.Options{ReadBatches: 2})
	const slow = 500 * time.Millisecond
	st.SetSlowRead(slow)
	j, _, err := st.Create(ctx, store.NewJob{UserID: "alice", Type: job.TypeAIPreview, Input: []byte(`{"prompt":"x"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, store.OwnedBy("alice"), j.ID); err != nil { // prepares the reads
		t.Fatal(err)
	}
	tx := lockJobs(t, st) // every statement blocks until the rollback
	before := st.Gets()
	errs := make([]error, 3)
	var wg sync.WaitGroup
	get := func(i int) { wg.Go(func() { _, errs[i] = st.Get(ctx, store.OwnedBy("alice"), j.ID) }) }

	start := time.Now()
	get(0)
	eventually.True(t, 5*time.Second, "the first Get's statement sent", func() bool { return st.Gets() == before+1 })
	get(1)
	eventually.True(t, slow/2, "the second Get queued behind the first batch", func() bool {
		return st.QueuedReads() == 1 && st.Gets() == before+1
	})
	eventually.True(t, 5*time.Second, "a statement of its own for the queued Get", func() bool { return st.Gets() == before+2 })
	if took := time.Since(start); took < slow {
		t.Errorf("the second statement started %v after the first Get, before the first batch had run for %v", took, slow)
	}
	if n := st.QueuedReads(); n != 0 {
		t.Errorf("%d Gets still queued after the second statement started, want 0", n)
	}

	get(2)
	eventually.True(t, 5*time.Second, "the third Get queued", func() bool { return st.QueuedReads() == 1 })
	time.Sleep(2 * slow) // what is tested is time passing: no third slot opens
	if n := st.Gets() - before; n != 2 {
		t.Errorf("%d statements with both slots busy for %v, want 2", n, 2*slow)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Get %d: %v", i, err)
		}
	}
	if n := st.Gets() - before; n != 3 {
		t.Errorf("%d statements for 3 Gets, want 3", n)
	}
}

// TestGetBehindAFullQueueReadsItsOwnJob: a Get that starts a batch beside
// a slow one while more than a batch's worth of reads wait takes the oldest
// (they waited longest), and still answers its own job. It once returned
// no job and no error, its own read left in the queue: in a burst of 2,000
// woken long polls and event streams the API read that as a job and
// panicked (the quick bench's delivery scenario, once in several runs).
func TestGetBehindAFullQueueReadsItsOwnJob(t *testing.T) {
	ctx := t.Context()
	st, _ := pgtest.NewStoreWith(t, store.Options{ReadBatches: 2})
	st.SetSlowRead(time.Hour) // no second statement while the Gets queue
	n := store.MaxReadBatch + 2
	ids := createJobs(t, st, n)
	// The first batch's one row is large, so that once the lock goes, the
	// batch of 256 small rows is answered first and its Get goes on (the
	// order in which a Get whose read was left behind returned without it).
	if _, err := st.DB().ExecContext(ctx, `UPDATE jobs SET result = jsonb_build_object('output', repeat('x', 8000000)) WHERE id = $1`, ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, store.OwnedBy("alice"), ids[1]); err != nil { // prepares the reads
		t.Fatal(err)
	}
	tx := lockJobs(t, st) // every statement blocks until the rollback
	before := st.Gets()
	got := make([]*job.Job, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	get := func(i int) { wg.Go(func() { got[i], errs[i] = st.Get(ctx, store.OwnedBy("alice"), ids[i]) }) }

	get(0)
	eventually.True(t, 5*time.Second, "the first Get's statement sent", func() bool { return st.Gets() == before+1 })
	for i := 1; i < n-1; i++ {
		get(i)
	}
	eventually.True(t, 5*time.Second, "a full batch of Gets queued", func() bool { return st.QueuedReads() == n-2 })
	st.SetSlowRead(0) // the batch in flight is slow now: the next Get starts one
	get(n - 1)
	eventually.True(t, 5*time.Second, "a second statement, of the oldest queued", func() bool { return st.Gets() == before+2 })
	if q := st.QueuedReads(); q != 1 {
		t.Errorf("%d Gets queued after the second statement took a full batch, want 1 (the newest)", q)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || got[i] == nil || got[i].ID != ids[i] {
			t.Errorf("Get %d: %v, %v; want job %s", i, got[i], errs[i], ids[i])
		}
	}
}

// oneSlotStore opens a store on a fresh database with one read slot.
func oneSlotStore(t *testing.T) *store.Store {
	t.Helper()
	st, _ := pgtest.NewStoreWith(t, store.Options{ReadBatches: 1})
	return st
}

// lockJobs locks the jobs table, so that every read of it waits, until the
// returned transaction ends (at the latest when the test does).
func lockJobs(t *testing.T, st *store.Store) *sql.Tx {
	t.Helper()
	tx, err := st.DB().Begin()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback() })
	if _, err := tx.Exec(`LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	return tx
}

// TestBatchedReadIsPlannedOnce: the batched status read runs on PostgreSQL's
// generic plan, planned once per connection, not afresh each time (by
// default the first five executions at least are planned afresh, and on a
// table of jobs every later one: see newReadPool).
func TestBatchedReadIsPlannedOnce(t *testing.T) {
	if pgtest.Pooler() {
		t.Skip("behind a pooler the status reads prepare nothing: no plan to cache")
	}
	ctx := t.Context()
	st := oneSlotStore(t) // one connection, whose prepared statements the test reads
	var ids []uuid.UUID
	for range 8 {
		j, _, err := st.Create(ctx, store.NewJob{UserID: "alice", Type: job.TypeAIPreview, Input: []byte(`{"prompt":"x"}`)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	for range 10 {
		if err := st.ReadBatch("alice", ids...); err != nil {
			t.Fatal(err)
		}
	}
	generic, custom, err := st.BatchReadPlans(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if custom != 0 || generic != 10 {
		t.Errorf("10 batched reads: %d generic plans, %d custom; want 10 generic (planned once), 0 custom", generic, custom)
	}
}
