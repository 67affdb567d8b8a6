package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/store"
)

// TestHeartbeat: held leases are extended, a lease taken by someone else is
// reported lost, and a row locked by another transaction (a completion in
// flight) is skipped: neither waited for nor reported.
func TestHeartbeat(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	for range 3 {
		if _, _, err := st.Create(ctx, store.NewJob{UserID: "alice", Type: store.TypeAIPreview, Input: []byte(`{"prompt":"x"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	claimed, err := st.Claim(ctx, 3, time.Minute)
	if err != nil || len(claimed) != 3 {
		t.Fatalf("claim: %d jobs, %v", len(claimed), err)
	}
	held, stolen, locked := claimed[0], claimed[1], claimed[2]
	db := st.DB()
	if _, err := db.Exec(`UPDATE jobs SET lease_owner = $2 WHERE id = $1`, stolen.ID, uuid.New()); err != nil {
		t.Fatal(err)
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE`, locked.ID); err != nil {
		t.Fatal(err)
	}

	expiry := func(id uuid.UUID) time.Time {
		var at time.Time
		if err := db.Get(&at, `SELECT lease_expires_at FROM jobs WHERE id = $1`, id); err != nil {
			t.Fatal(err)
		}
		return at
	}
	heldBefore, lockedBefore := expiry(held.ID), expiry(locked.ID)
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	lost, err := st.Heartbeat(hctx, claimed, time.Hour)
	if err != nil {
		t.Fatalf("heartbeat with a locked row: %v", err)
	}
	if !slices.Equal(lost, []uuid.UUID{stolen.ID}) {
		t.Errorf("lost = %v, want only %v", lost, stolen.ID)
	}
	if got := expiry(held.ID); !got.After(heldBefore.Add(30 * time.Minute)) {
		t.Errorf("held lease not extended: %v -> %v", heldBefore, got)
	}
	if got := expiry(locked.ID); !got.Equal(lockedBefore) {
		t.Errorf("locked row was written: %v -> %v", lockedBefore, got)
	}

	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if lost, err = st.Heartbeat(ctx, []store.Claimed{locked}, time.Hour); err != nil || len(lost) != 0 {
		t.Fatalf("heartbeat after unlock: lost %v, %v", lost, err)
	}
	if got := expiry(locked.ID); !got.After(lockedBefore.Add(30 * time.Minute)) {
		t.Errorf("unlocked lease not extended: %v -> %v", lockedBefore, got)
	}
}

// TestPickSettle: picked jobs are locked from other claimers until the batch
// settles; a rolled-back batch leaves its jobs as they were; settling writes
// each job's line once and counts the attempt.
func TestPickSettle(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	var ids []uuid.UUID
	for range 3 {
		j, _, err := st.Create(ctx, store.NewJob{UserID: "alice", Type: store.TypeAIPreview, Input: []byte(`{"prompt":"x"}`)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}

	p, err := st.Pick(ctx, 3, nil)
	if err != nil || p == nil || len(p.Jobs) != 3 {
		t.Fatalf("pick: %+v, %v", p, err)
	}
	if again, err := st.Claim(ctx, 3, time.Minute); err != nil || len(again) != 0 {
		t.Fatalf("claim while picked: %d jobs, %v; want none", len(again), err)
	}
	if err := p.Rollback(); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if j, _ := st.Get(ctx, "alice", id); j.Status != store.StatusPending || j.Attempts != 0 || j.Version != 1 {
			t.Fatalf("after rollback: %+v", j)
		}
	}

	p, err = st.Pick(ctx, 3, nil)
	if err != nil || p == nil || len(p.Jobs) != 3 {
		t.Fatalf("pick again: %+v, %v", p, err)
	}
	byID := map[uuid.UUID]store.Claimed{}
	for _, c := range p.Jobs {
		if c.Attempts != 1 || c.Lease != uuid.Nil {
			t.Errorf("picked %+v: want attempt 1, no lease", c)
		}
		byID[c.ID] = c
	}
	lease := uuid.New()
	err = p.Settle(ctx, []store.Outcome{
		{ID: ids[0], Kind: store.OutcomeCompleted, Result: []byte(`{"output":"ok"}`)},
		{ID: ids[1], Kind: store.OutcomeFailed, Error: "Invalid input: field \"prompt\" is empty"},
		{ID: ids[2], Kind: store.OutcomeRunning, Lease: lease},
	}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	done, _ := st.Get(ctx, "alice", ids[0])
	if done.Status != store.StatusCompleted || string(done.Result) != `{"output": "ok"}` || done.Attempts != 1 || done.Version != 2 ||
		done.StartedAt == nil || done.CompletedAt == nil || done.CompletedAt.Before(*done.StartedAt) || done.UpdatedAt.Before(*done.CompletedAt) {
		t.Errorf("completed in one write: %+v (result %s)", done, done.Result)
	}
	failed, _ := st.Get(ctx, "alice", ids[1])
	if failed.Status != store.StatusFailed || failed.Error == nil || failed.Attempts != 1 || failed.Result != nil {
		t.Errorf("failed in one write: %+v", failed)
	}
	running, _ := st.Get(ctx, "alice", ids[2])
	if running.Status != store.StatusProcessing || running.Attempts != 1 || running.StartedAt == nil || running.CompletedAt != nil {
		t.Errorf("still running: %+v", running)
	}
	// The running job's later outcome is fenced on the lease Settle wrote.
	c := byID[ids[2]]
	c.Lease = lease
	wrote, err := st.CompleteMany(ctx, []store.Completion{{Claimed: c, Result: []byte(`{"output":"late"}`)}})
	if err != nil || !wrote[ids[2]] {
		t.Errorf("completion under the settled lease: %v, %v", wrote, err)
	}
}

// TestPickAfter: a pick with after looks only past that place in the queue
// order, and Last is the place of the batch's last job.
func TestPickAfter(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	for range 3 {
		if _, _, err := st.Create(ctx, store.NewJob{UserID: "alice", Type: store.TypeAIPreview, Input: []byte(`{"prompt":"x"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	var order []uuid.UUID // the queue order, as the database has it
	if err := st.DB().Select(&order, `SELECT id FROM jobs ORDER BY run_after, id`); err != nil {
		t.Fatal(err)
	}
	first, err := st.Pick(ctx, 1, nil)
	if err != nil || first == nil || first.Jobs[0].ID != order[0] || first.Last.ID != order[0] {
		t.Fatalf("pick from the head: %+v, %v; want %v", first, err, order[0])
	}
	if err := first.Rollback(); err != nil { // unlocked: only after keeps the next pick off it
		t.Fatal(err)
	}
	next, err := st.Pick(ctx, 5, &first.Last)
	if err != nil || next == nil {
		t.Fatalf("pick after: %v, %v", next, err)
	}
	defer next.Rollback()
	var got []uuid.UUID
	for _, j := range next.Jobs {
		got = append(got, j.ID)
	}
	if !slices.Equal(got, order[1:]) || next.Last.ID != order[2] {
		t.Errorf("pick after the first: %v (last %v), want %v", got, next.Last.ID, order[1:])
	}
}
