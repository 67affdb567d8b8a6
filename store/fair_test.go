package store_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
)

// createFor creates n jobs of user, oldest first.
func createFor(t *testing.T, st *store.Store, user string, n int) []uuid.UUID {
	t.Helper()
	var ids []uuid.UUID
	for range n {
		j, _, err := st.Create(t.Context(), store.NewJob{UserID: user, Type: job.TypeAIPreview, Input: []byte(`{"prompt":"x"}`)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	return ids
}

func perUser(got []store.Claimed) map[string]int {
	n := map[string]int{}
	for _, c := range got {
		n[c.UserID]++
	}
	return n
}

// TestClaimIsFair: a user's backlog does not come before another user's
// next job. A claim takes every user's oldest job before anybody's second,
// and claims of one job take users in turn.
func TestClaimIsFair(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	createFor(t, st, "alice", 30)
	bob := createFor(t, st, "bob", 1)[0]
	carol := createFor(t, st, "carol", 2)

	got, _, err := st.Claim(ctx, store.ClaimRequest{Worker: "w1", N: 5, Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	// Turn 1: alice, bob, carol; turn 2: alice, carol.
	if diff := cmp.Diff(map[string]int{"alice": 2, "bob": 1, "carol": 2}, perUser(got)); diff != "" {
		t.Errorf("claim of 5 per user (-want +got):\n%s", diff)
	}
	claimed := map[uuid.UUID]bool{}
	for _, c := range got {
		claimed[c.ID] = true
	}
	if !claimed[bob] || !claimed[carol[0]] || !claimed[carol[1]] {
		t.Errorf("bob's and carol's jobs not all claimed: %v", got)
	}

	// Only alice is left: claims of one job each go on with her backlog in
	// queue order.
	prev := time.Time{}
	for range 3 {
		one, _, err := st.Claim(ctx, store.ClaimRequest{Worker: "w1", N: 1, Lease: time.Minute})
		if err != nil || len(one) != 1 || one[0].UserID != "alice" {
			t.Fatalf("claim of one: %v, %v", one, err)
		}
		if one[0].CreatedAt.Before(prev) {
			t.Errorf("alice's jobs out of order: %v after %v", one[0].CreatedAt, prev)
		}
		prev = one[0].CreatedAt
	}
}

// TestClaimRoundRobin: claims of one job alternate between two users with
// backlogs when each passes on the next UserAfter, whatever the age of
// their backlogs; with three users, claims of two go round all three.
func TestClaimRoundRobin(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	createFor(t, st, "zoe", 5) // the older backlog
	createFor(t, st, "adam", 5)
	var users []string
	after := ""
	for range 6 {
		got, _, err := st.Claim(ctx, store.ClaimRequest{Worker: "w1", N: 1, Lease: time.Minute, UserAfter: after})
		if err != nil || len(got) != 1 {
			t.Fatalf("claim: %v, %v", got, err)
		}
		users = append(users, got[0].UserID)
		after = store.NextUserAfter(after, got)
	}
	if diff := cmp.Diff([]string{"zoe", "adam", "zoe", "adam", "zoe", "adam"}, users); diff != "" {
		t.Errorf("users served (-want +got):\n%s", diff)
	}
}

// TestClaimFairPastCursor: a claim with After takes every user's turns past
// that place only; the user's jobs before it wait for a claim from the
// head.
func TestClaimFairPastCursor(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	createFor(t, st, "alice", 4)
	first, last, err := st.Claim(ctx, store.ClaimRequest{Worker: "w1", N: 2, Lease: time.Minute})
	if err != nil || len(first) != 2 {
		t.Fatalf("claim: %v, %v", first, err)
	}
	bob := createFor(t, st, "bob", 1)[0]
	// Put one of alice's remaining jobs before the cursor, as a job handed
	// back or committed late would be.
	early := last.RunAfter.Add(-time.Second)
	if _, err := st.DB().Exec(`UPDATE job_queue SET run_after = $1 WHERE id = (
		SELECT id FROM jobs WHERE user_id = 'alice' AND status = 'PENDING' ORDER BY id LIMIT 1)`, early); err != nil {
		t.Fatal(err)
	}
	got, _, err := st.Claim(ctx, store.ClaimRequest{Worker: "w1", N: 10, Lease: time.Minute, After: &last})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]int{"alice": 1, "bob": 1}, perUser(got)); diff != "" {
		t.Errorf("claim past the cursor (-want +got):\n%s", diff)
	}
	found := false
	for _, c := range got {
		found = found || c.ID == bob
	}
	if !found {
		t.Errorf("bob's job not claimed: %v", got)
	}
	rest, _, err := st.Claim(ctx, store.ClaimRequest{Worker: "w1", N: 10, Lease: time.Minute})
	if err != nil || len(rest) != 1 || rest[0].UserID != "alice" {
		t.Errorf("claim from the head: %v, %v", rest, err)
	}
}

// TestClaimUserConcurrency: with a cap, a claim takes no more of a user's
// jobs than the cap minus those the user has under a lease; other users
// are not held back, and a finished job frees its place.
func TestClaimUserConcurrency(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	createFor(t, st, "alice", 6)
	createFor(t, st, "bob", 1)
	req := store.ClaimRequest{Worker: "w1", N: 10, Lease: time.Minute, UserConcurrency: 2}
	got, _, err := st.Claim(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]int{"alice": 2, "bob": 1}, perUser(got)); diff != "" {
		t.Errorf("first claim (-want +got):\n%s", diff)
	}
	if again, _, err := st.Claim(ctx, req); err != nil || len(again) != 0 {
		t.Errorf("a claim at the cap took %v (%v)", again, err)
	}
	var done store.Claimed
	for _, c := range got {
		if c.UserID == "alice" {
			done = c
		}
	}
	if _, err := st.Finish(ctx, []store.Outcome{{ID: done.ID, Lease: done.Lease, Kind: store.OutcomeCompleted, Result: []byte(`{}`)}}); err != nil {
		t.Fatal(err)
	}
	next, _, err := st.Claim(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]int{"alice": 1}, perUser(next)); diff != "" {
		t.Errorf("claim after one finished (-want +got):\n%s", diff)
	}
	// Without the cap the rest of alice's backlog is claimable at once.
	req.UserConcurrency = 0
	if rest, _, err := st.Claim(ctx, req); err != nil || len(rest) != 3 {
		t.Errorf("uncapped claim took %d, want 3 (%v)", len(rest), err)
	}
}

func TestClaimRoundRobinThree(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	for _, u := range []string{"ann", "ben", "cat"} {
		createFor(t, st, u, 4)
	}
	var served [][]string
	after := ""
	for range 3 {
		got, _, err := st.Claim(ctx, store.ClaimRequest{Worker: "w1", N: 2, Lease: time.Minute, UserAfter: after})
		if err != nil || len(got) != 2 {
			t.Fatalf("claim: %v, %v", got, err)
		}
		users := []string{got[0].UserID, got[1].UserID}
		slices.Sort(users)
		served = append(served, users)
		after = store.NextUserAfter(after, got)
	}
	// Descending from the top, then round: cat ben | ann cat | ben ann.
	want := [][]string{{"ben", "cat"}, {"ann", "cat"}, {"ann", "ben"}}
	if diff := cmp.Diff(want, served); diff != "" {
		t.Errorf("users per claim (-want +got):\n%s", diff)
	}
}

// TestClaimWalkSkipsUsersWithNothingToOffer: users whose only waiting jobs
// are retries not yet due, or who are at their cap, take no place in the
// walk over users, so a claim still reaches the user with a job to run.
func TestClaimWalkSkipsUsersWithNothingToOffer(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	// Users z00..z19 sort first in the walk (descending); each has one job
	// waiting for a retry a minute from now. With N = 1 the walk has 2
	// places.
	for i := range 20 {
		createFor(t, st, fmt.Sprintf("z%02d", i), 1)
	}
	if _, err := st.DB().Exec(`UPDATE job_queue SET run_after = now() + interval '1 minute'`); err != nil {
		t.Fatal(err)
	}
	ann := createFor(t, st, "ann", 1)[0]
	got, _, err := st.Claim(ctx, store.ClaimRequest{Worker: "w1", N: 1, Lease: time.Minute})
	if err != nil || len(got) != 1 || got[0].ID != ann {
		t.Fatalf("claim behind retries: %v, %v; want ann's job", got, err)
	}

	// The same with users at their cap: y00..y19 each hold one leased job
	// and wait with another; bob waits with one.
	for i := range 20 {
		createFor(t, st, fmt.Sprintf("y%02d", i), 2)
	}
	capped := store.ClaimRequest{Worker: "w1", N: 40, Lease: time.Minute, UserConcurrency: 1}
	if first, _, err := st.Claim(ctx, capped); err != nil || len(first) != 20 {
		t.Fatalf("capped claim took %d, want one per y user (%v)", len(first), err)
	}
	bob := createFor(t, st, "bob", 1)[0]
	capped.N = 1
	got, _, err = st.Claim(ctx, capped)
	if err != nil || len(got) != 1 || got[0].ID != bob {
		t.Fatalf("claim behind capped users: %v, %v; want bob's job", got, err)
	}
}

// TestWindowClaim: a window claim takes the next jobs in queue order when
// they are spread over the users it is told of, at most N ÷ users from each,
// and nothing when one user's backlog fills the window.
func TestWindowClaim(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	// Interleaved: a1 b1 a2 b2 a3 b3, then carol's one job.
	var order []uuid.UUID
	for range 3 {
		order = append(order, createFor(t, st, "alice", 1)[0], createFor(t, st, "bob", 1)[0])
	}
	order = append(order, createFor(t, st, "carol", 1)[0])

	got, last, err := st.Claim(ctx, store.ClaimRequest{Worker: "w1", N: 4, Lease: time.Minute, Users: 2})
	if err != nil {
		t.Fatal(err)
	}
	ids := func(cs []store.Claimed) []uuid.UUID {
		var out []uuid.UUID
		for _, c := range cs {
			out = append(out, c.ID)
		}
		slices.SortFunc(out, func(a, b uuid.UUID) int { return slices.Index(order, a) - slices.Index(order, b) })
		return out
	}
	if diff := cmp.Diff(order[:4], ids(got)); diff != "" {
		t.Fatalf("window claim of 4 among 2 users (-want +got):\n%s", diff)
	}
	if last.ID != order[3] {
		t.Errorf("the claim's last place is %v, want %v", last.ID, order[3])
	}

	// Past the cursor: a3 b3 carol; 3 users told, 1 each.
	got, _, err = st.Claim(ctx, store.ClaimRequest{Worker: "w1", N: 3, Lease: time.Minute, Users: 3, After: &last})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(order[4:], ids(got)); diff != "" {
		t.Fatalf("window claim past the cursor (-want +got):\n%s", diff)
	}

	// A window of one job of fay's and three of gus's, among 2 users: each
	// takes at most 4 ÷ 2, so gus's third waits.
	fay := createFor(t, st, "fay", 1)[0]
	gus := createFor(t, st, "gus", 3)
	got, _, err = st.Claim(ctx, store.ClaimRequest{Worker: "w1", N: 4, Lease: time.Minute, Users: 2})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[uuid.UUID]bool{fay: true, gus[0]: true, gus[1]: true}, claimedSet(got)); diff != "" {
		t.Fatalf("window claim capped at 2 per user (-want +got):\n%s", diff)
	}
	if _, _, err := st.Claim(ctx, store.ClaimRequest{Worker: "w1", N: 1, Lease: time.Minute}); err != nil {
		t.Fatal(err) // gus's third, out of the way of what follows
	}

	// One user's backlog fills the window: nothing is claimed.
	dan := createFor(t, st, "dan", 4)
	createFor(t, st, "erin", 1)
	got, _, err = st.Claim(ctx, store.ClaimRequest{Worker: "w1", N: 4, Lease: time.Minute, Users: 2})
	if err != nil || len(got) != 0 {
		t.Fatalf("window claim over one user's backlog took %d jobs (%v), want none", len(got), err)
	}
	// The full claim then serves both.
	got, _, err = st.Claim(ctx, store.ClaimRequest{Worker: "w1", N: 2, Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]int{"dan": 1, "erin": 1}, perUser(got)); diff != "" {
		t.Errorf("full claim after it (-want +got):\n%s", diff)
	}
	if !slices.Contains(ids(got), dan[0]) {
		t.Errorf("the full claim did not take dan's oldest job")
	}
}

func claimedSet(got []store.Claimed) map[uuid.UUID]bool {
	out := map[uuid.UUID]bool{}
	for _, c := range got {
		out[c.ID] = true
	}
	return out
}
