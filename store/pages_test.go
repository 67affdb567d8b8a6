package store_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
)

// TestFinishedPagesTakeNoNewJobs: jobs claimed and finished in batches, as
// a worker does, leave their pages with no room that a new job's row may
// take, so that once they are history (vacuumed), new jobs go to new pages
// and a burn-down's rows stay together however much history the table
// keeps (migration 00016; bench/README.md, "Flat as history grows"). At
// the previous fillfactor (50) the claims' and outcomes' row versions did
// not all fit on their pages, the rows that moved left holes, and new jobs
// scattered into them.
func TestFinishedPagesTakeNoNewJobs(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	db := st.DB()
	create := func(n int, user string) {
		t.Helper()
		for range n {
			if _, _, err := st.Create(ctx, store.NewJob{UserID: user, Type: job.TypeAIPreview, Input: []byte(`{"prompt":"x"}`)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	const old = 600
	create(old, "old")
	for done := 0; done < old; {
		claimed, _, err := st.Claim(ctx, store.ClaimRequest{Worker: "w1", N: 200, Lease: time.Minute})
		if err != nil || len(claimed) == 0 {
			t.Fatalf("claim: %d jobs, %v", len(claimed), err)
		}
		outs := make([]store.Outcome, len(claimed))
		for i, c := range claimed {
			outs[i] = store.Outcome{ID: c.ID, Lease: c.Lease, Kind: store.OutcomeCompleted,
				Result: fmt.Appendf(nil, `{"output":"Local preview (extractive; no AI model was called): x %d"}`, i)}
		}
		if _, err := st.Finish(ctx, outs); err != nil {
			t.Fatal(err)
		}
		done += len(claimed)
	}
	if _, err := db.Exec(`VACUUM jobs`); err != nil {
		t.Fatal(err)
	}
	var lastOld int
	if err := db.Get(&lastOld, `SELECT max((ctid::text::point)[0])::int FROM jobs WHERE user_id = 'old'`); err != nil {
		t.Fatal(err)
	}

	create(100, "new")
	// The last page of the history may take new rows (it was being filled);
	// no earlier one may.
	var inOld []int
	if err := db.Select(&inOld, `SELECT DISTINCT (ctid::text::point)[0]::int AS page FROM jobs
		WHERE user_id = 'new' AND (ctid::text::point)[0] < $1 ORDER BY page`, lastOld); err != nil {
		t.Fatal(err)
	}
	if len(inOld) > 0 {
		t.Errorf("new jobs went to %d pages of finished jobs (%v; the finished jobs end on page %d)", len(inOld), inOld, lastOld)
	}
}
