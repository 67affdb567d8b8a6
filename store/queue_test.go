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
