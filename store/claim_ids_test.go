package store_test

import (
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
)

// TestClaimIDsCapped: under a user cap, a claim by id takes a user's named
// jobs oldest first only while the user has fewer leased jobs than the cap
// (counting leases any claimer holds); the jobs it leaves out keep
// attempts 0 and PENDING, and Waiting reports them as due now. Other users
// are not held back, and the long-lived worker's capped claim sees the
// same count.
func TestClaimIDsCapped(t *testing.T) {
	st := newOutboxStore(t)
	ctx := t.Context()
	held := createJob(t, st, store.NewJob{UserID: "alice"})
	var alice, bob []uuid.UUID
	for range 3 {
		alice = append(alice, createJob(t, st, store.NewJob{UserID: "alice"}).ID)
	}
	for range 2 {
		bob = append(bob, createJob(t, st, store.NewJob{UserID: "bob"}).ID)
	}
	if got, err := st.ClaimIDs(ctx, "worker-1", []uuid.UUID{held.ID}, time.Minute); err != nil || len(got) != 1 {
		t.Fatalf("claim of alice's first job: %v, %v", got, err)
	}

	named := slices.Concat(alice, bob)
	got, err := st.ClaimIDsCapped(ctx, "lambda-1", named, time.Minute, 2)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uuid.UUID{alice[0], bob[0], bob[1]}; !sameIDs(claimedIDs(got), want) {
		t.Fatalf("claimed %v, want alice's oldest and both of bob's %v", claimedIDs(got), want)
	}
	for _, id := range alice[1:] {
		j, err := st.Get(ctx, store.OwnedBy("alice"), id)
		if err != nil {
			t.Fatal(err)
		}
		if j.Status != job.StatusPending || j.Attempts != 0 {
			t.Errorf("job %v left out at the cap is %s with %d attempts, want PENDING with 0", id, j.Status, j.Attempts)
		}
	}
	waiting, err := st.Waiting(ctx, named)
	if err != nil {
		t.Fatal(err)
	}
	if len(waiting) != 2 || waiting[alice[1]] != 0 || waiting[alice[2]] != 0 {
		t.Errorf("waiting = %v, want alice's two left out, due now (0)", waiting)
	}

	if again, err := st.ClaimIDsCapped(ctx, "lambda-2", alice[1:], time.Minute, 2); err != nil || len(again) != 0 {
		t.Errorf("a second capped claim took %v (%v), want nothing: alice is at the cap", claimedIDs(again), err)
	}
	if polled, _, err := st.Claim(ctx, store.ClaimRequest{Worker: "worker-2", N: 8, Lease: time.Minute, UserConcurrency: 2}); err != nil || len(polled) != 0 {
		t.Errorf("the worker's capped claim took %v (%v), want nothing: alice is at the cap", claimedIDs(polled), err)
	}
	if raised, err := st.ClaimIDsCapped(ctx, "lambda-3", alice[1:], time.Minute, 3); err != nil || !sameIDs(claimedIDs(raised), alice[1:2]) {
		t.Errorf("with cap 3: claimed %v (%v), want only %v", claimedIDs(raised), err, alice[1])
	}
	if uncapped, err := st.ClaimIDs(ctx, "lambda-4", alice[2:], time.Minute); err != nil || !sameIDs(claimedIDs(uncapped), alice[2:]) {
		t.Errorf("without a cap: claimed %v (%v), want %v", claimedIDs(uncapped), err, alice[2])
	}
}

func claimedIDs(cs []store.Claimed) []uuid.UUID {
	out := make([]uuid.UUID, len(cs))
	for i, c := range cs {
		out[i] = c.ID
	}
	return out
}

// sameIDs compares two sets of ids (a claim returns its rows in no order).
func sameIDs(a, b []uuid.UUID) bool {
	key := func(ids []uuid.UUID) []string {
		s := make([]string, len(ids))
		for i, id := range ids {
			s[i] = id.String()
		}
		slices.Sort(s)
		return s
	}
	return slices.Equal(key(a), key(b))
}
