package store_test

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
)

// TestHeartbeat: a claim's one lease is extended for all its attempts, an
// attempt whose job no longer carries the lease is reported lost, and the
// leases of claims that ended are deleted.
func TestHeartbeat(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	create := func() {
		if _, _, err := st.Create(ctx, store.NewJob{UserID: "alice", Type: job.TypeAIPreview, Input: []byte(`{"prompt":"x"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		create()
	}
	claimed, _, err := st.Claim(ctx, store.ClaimRequest{Worker: "w1", N: 3, Lease: time.Minute})
	if err != nil || len(claimed) != 3 {
		t.Fatalf("claim: %d jobs, %v", len(claimed), err)
	}
	lease := claimed[0].Lease
	for _, c := range claimed {
		if c.Lease != lease {
			t.Fatalf("one claim, leases %v and %v", lease, c.Lease)
		}
	}
	create()
	ended, _, err := st.Claim(ctx, store.ClaimRequest{Worker: "w1", N: 1, Lease: time.Minute})
	if err != nil || len(ended) != 1 {
		t.Fatalf("second claim: %d jobs, %v", len(ended), err)
	}
	stolen := claimed[1]
	db := st.DB()
	if _, err := db.Exec(`UPDATE jobs SET lease_owner = $2 WHERE id = $1`, stolen.ID, uuid.New()); err != nil {
		t.Fatal(err)
	}
	expiry := func(lease uuid.UUID) time.Time {
		var at time.Time
		if err := db.Get(&at, `SELECT expires_at FROM job_leases WHERE lease = $1`, lease); err != nil {
			t.Fatal(err)
		}
		return at
	}
	before := expiry(lease)
	lost, err := st.Heartbeat(ctx, claimed, []uuid.UUID{ended[0].Lease}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(lost, []uuid.UUID{stolen.ID}) {
		t.Errorf("lost = %v, want only %v", lost, stolen.ID)
	}
	if got := expiry(lease); !got.After(before.Add(30 * time.Minute)) {
		t.Errorf("the claim's lease not extended: %v -> %v", before, got)
	}
	var leases int
	if err := db.Get(&leases, `SELECT count(*) FROM job_leases`); err != nil || leases != 1 {
		t.Errorf("%d leases left (%v), want the live claim's alone", leases, err)
	}
}

// jobState is what the queue tests read back of a row.
type jobState struct {
	Status    job.Status `db:"status"`
	Attempts  int        `db:"attempts"`
	Started   bool       `db:"started"`
	Leased    bool       `db:"leased"`
	WorkerID  *string    `db:"worker_id"`
	Runnable  bool       `db:"runnable"`
	Error     *string    `db:"error"`
	HasResult bool       `db:"has_result"`
}

func readState(t *testing.T, st *store.Store, id uuid.UUID) jobState {
	t.Helper()
	var s jobState
	if err := st.DB().Get(&s, `SELECT status, attempts, started_at IS NOT NULL AS started,
		lease_owner IS NOT NULL AS leased, worker_id, run_after <= now() AS runnable, error, result IS NOT NULL AS has_result
		FROM jobs WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	return s
}

func createJobs(t *testing.T, st *store.Store, n int) []uuid.UUID {
	t.Helper()
	var ids []uuid.UUID
	for range n {
		j, _, err := st.Create(t.Context(), store.NewJob{UserID: "alice", Type: job.TypeAIPreview, Input: []byte(`{"prompt":"x"}`)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	return ids
}

// TestClaimIsCommitted: a claim is visible to everyone before any handler
// runs: PROCESSING, the attempt counted, startedAt set, a lease and the
// worker's id; a second claimer finds nothing.
func TestClaimIsCommitted(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	ids := createJobs(t, st, 2)
	claimed, _, err := st.Claim(ctx, store.ClaimRequest{Worker: "w1", N: 5, Lease: time.Minute})
	if err != nil || len(claimed) != 2 {
		t.Fatalf("claim: %d jobs, %v", len(claimed), err)
	}
	for _, id := range ids {
		got := readState(t, st, id)
		if got.Status != job.StatusProcessing || got.Attempts != 1 || !got.Started || !got.Leased || got.WorkerID == nil || *got.WorkerID != "w1" {
			t.Errorf("claimed job %v: %+v", id, got)
		}
	}
	for _, c := range claimed {
		if c.Attempts != 1 || c.Lease == uuid.Nil || c.CreatedAt.IsZero() || string(c.Input) != `{"prompt": "x"}` {
			t.Errorf("claimed %+v", c)
		}
	}
	if again, _, err := st.Claim(ctx, store.ClaimRequest{Worker: "w2", N: 5, Lease: time.Minute}); err != nil || len(again) != 0 {
		t.Errorf("a second claim took %d jobs (%v)", len(again), err)
	}
}

// TestFinish: each outcome kind writes what it says, in one statement, and
// only under the attempt's lease.
func TestFinish(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	createJobs(t, st, 4)
	claimed, _, err := st.Claim(ctx, store.ClaimRequest{Worker: "w1", N: 4, Lease: time.Minute})
	if err != nil || len(claimed) != 4 {
		t.Fatalf("claim: %d jobs, %v", len(claimed), err)
	}
	c0, c1, c2, c3 := claimed[0], claimed[1], claimed[2], claimed[3]
	stale := c3
	stale.Lease = uuid.New()
	done, err := st.Finish(ctx, []store.Outcome{
		{ID: c0.ID, Lease: c0.Lease, Kind: store.OutcomeCompleted, Result: []byte(`{"output":"ok"}`)},
		{ID: c1.ID, Lease: c1.Lease, Kind: store.OutcomeFailed, Error: "Invalid input"},
		{ID: c2.ID, Lease: c2.Lease, Kind: store.OutcomeRetry, Backoff: time.Hour},
		{ID: stale.ID, Lease: stale.Lease, Kind: store.OutcomeCompleted, Result: []byte(`{"output":"stale"}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[uuid.UUID]bool{c0.ID: true, c1.ID: true, c2.ID: true}; !maps.Equal(done, want) {
		t.Errorf("written %v, want %v", done, want)
	}
	tests := []struct {
		name string
		id   uuid.UUID
		want jobState
	}{
		{"completed", c0.ID, jobState{Status: job.StatusCompleted, Attempts: 1, Started: true, Runnable: true, HasResult: true}},
		{"failed", c1.ID, jobState{Status: job.StatusFailed, Attempts: 1, Started: true, Runnable: true, Error: ptr("Invalid input")}},
		{"retry: PROCESSING, no error, not runnable before its backoff", c2.ID, jobState{Status: job.StatusProcessing, Attempts: 1, Started: true}},
		{"stale lease: untouched", c3.ID, jobState{Status: job.StatusProcessing, Attempts: 1, Started: true, Leased: true, Runnable: true}},
	}
	for _, tc := range tests {
		got := readState(t, st, tc.id)
		got.WorkerID = nil
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}

// TestRelease: a job handed back on its first attempt is PENDING again as if
// never taken; one handed back on a later attempt stays PROCESSING with the
// earlier attempts still counted. Both are claimable at once.
func TestRelease(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	ids := createJobs(t, st, 2)
	claim := func() []store.Claimed {
		t.Helper()
		c, _, err := st.Claim(ctx, store.ClaimRequest{Worker: "w1", N: 2, Lease: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	first := claim()
	// The second job's first attempt fails and is retried at once.
	var outs []store.Outcome
	for _, c := range first {
		kind := store.OutcomeRelease
		if c.ID == ids[1] {
			kind = store.OutcomeRetry
		}
		outs = append(outs, store.Outcome{ID: c.ID, Lease: c.Lease, Kind: kind})
	}
	if _, err := st.Finish(ctx, outs); err != nil {
		t.Fatal(err)
	}
	if got := readState(t, st, ids[0]); got.Status != job.StatusPending || got.Attempts != 0 || got.Started || got.Leased || !got.Runnable {
		t.Errorf("released first attempt: %+v", got)
	}
	var second store.Claimed
	for _, c := range claim() {
		if c.ID == ids[1] {
			second = c
		}
	}
	if second.Attempts != 2 {
		t.Fatalf("second attempt: %+v", second)
	}
	if _, err := st.Finish(ctx, []store.Outcome{{ID: second.ID, Lease: second.Lease, Kind: store.OutcomeRelease}}); err != nil {
		t.Fatal(err)
	}
	got := readState(t, st, ids[1])
	got.WorkerID = nil
	if got != (jobState{Status: job.StatusProcessing, Attempts: 1, Started: true, Runnable: true}) {
		t.Errorf("released second attempt: %+v", got)
	}
}

// TestClaimAfter: a claim with After looks only past that place in the
// queue order, and returns the place of its last job.
func TestClaimAfter(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	createJobs(t, st, 4)
	var order []uuid.UUID // the queue order, as the database has it
	if err := st.DB().Select(&order, `SELECT id FROM jobs ORDER BY run_after, id`); err != nil {
		t.Fatal(err)
	}
	first, last, err := st.Claim(ctx, store.ClaimRequest{Worker: "w", N: 2, Lease: time.Minute})
	if err != nil || len(first) != 2 || last.ID != order[1] {
		t.Fatalf("claim from the head: %d jobs, last %v, %v; want last %v", len(first), last.ID, err, order[1])
	}
	// Put the head back in the queue: only a claim from the head sees it.
	if _, err := st.DB().Exec(`WITH q AS (INSERT INTO job_queue (id, user_id, run_after) SELECT id, user_id, run_after FROM jobs WHERE id = $1)
		UPDATE jobs SET lease_owner = NULL, status = 'PENDING' WHERE id = $1`, order[0]); err != nil {
		t.Fatal(err)
	}
	next, last, err := st.Claim(ctx, store.ClaimRequest{Worker: "w", N: 5, Lease: time.Minute, After: &last})
	if err != nil {
		t.Fatal(err)
	}
	var got []uuid.UUID
	for _, c := range next {
		got = append(got, c.ID)
	}
	slices.SortFunc(got, func(a, b uuid.UUID) int { return slices.Index(order, a) - slices.Index(order, b) })
	if !slices.Equal(got, order[2:]) || last.ID != order[3] {
		t.Errorf("claim after the second: %v (last %v), want %v", got, last.ID, order[2:])
	}
}

func ptr[T any](v T) *T { return &v }
