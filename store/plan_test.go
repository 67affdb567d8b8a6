package store_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/store"
)

// TestQueuePlansIgnoreStatistics: whatever the statistics say about the
// queue (taken full, half burnt down, or empty before a burst of new jobs),
// no statement of the worker reads job_queue or jobs by a sequential scan:
// each reaches its rows through an index or by ctid, so its cost follows
// the rows it touches, not the size of either table. (The previous design
// lost half its rate when autovacuum and autoanalyze ran in the middle of
// a 1M-job burn-down; bench/README.md, "The queue's storage".)
func TestQueuePlansIgnoreStatistics(t *testing.T) {
	if testing.Short() {
		t.Skip("seeds 60,000 jobs")
	}
	st, _ := pgtest.NewStore(t)
	db := st.DB()
	seed := func() {
		t.Helper()
		// One user's backlog and 1,000 users' interleaved, as the bench seeds.
		mustExec(t, st, `INSERT INTO jobs (id, user_id, type, input)
			SELECT gen_random_uuid(), CASE WHEN g % 2 = 0 THEN 'solo' ELSE 'user-' || (g % 1000) END, 'AI_PREVIEW', '{"prompt":"x"}'
			FROM generate_series(1, 30000) g`)
	}
	ctx := t.Context()
	burn := func(n int) (ids, leases []string, last store.QueueKey) {
		t.Helper()
		for done := 0; done < n; {
			got, k, err := st.Claim(ctx, store.ClaimRequest{Worker: "w", N: 500, Lease: time.Minute})
			if err != nil || len(got) == 0 {
				t.Fatalf("claim: %d, %v", len(got), err)
			}
			last = k
			outs := make([]store.Outcome, len(got))
			for i, c := range got {
				outs[i] = store.Outcome{ID: c.ID, Lease: c.Lease, Kind: store.OutcomeCompleted, Result: []byte(`{}`)}
			}
			if _, err := st.Finish(ctx, outs); err != nil {
				t.Fatal(err)
			}
			done += len(got)
		}
		// 500 attempts left running, for the outcome and heartbeat plans.
		got, _, err := st.Claim(ctx, store.ClaimRequest{Worker: "w", N: 500, Lease: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range got {
			ids, leases = append(ids, c.ID.String()), append(leases, c.Lease.String())
		}
		return ids, leases, last
	}

	seed()
	mustExec(t, st, `ANALYZE`)
	ids, leases, cursor := burn(2000)
	checkPlans(t, db, "statistics of a full queue", store.QueueStatements(ids, leases, cursor))

	ids, leases, cursor = burn(13000)
	mustExec(t, st, `ANALYZE`)
	checkPlans(t, db, "statistics taken half-way through a burn-down", store.QueueStatements(ids, leases, cursor))

	ids, leases, cursor = burn(13000)
	mustExec(t, st, `ANALYZE`) // 500 jobs waiting, 1,500 running
	seed()
	checkPlans(t, db, "statistics of a nearly empty queue, then 30,000 new jobs", store.QueueStatements(ids, leases, cursor))
}

// checkPlans fails for every statement whose plan has a sequential scan of
// job_queue or jobs.
func checkPlans(t *testing.T, db *sqlx.DB, when string, stmts []store.QueueStatement) {
	t.Helper()
	for _, s := range stmts {
		var raw []byte
		if err := db.QueryRow("EXPLAIN (FORMAT JSON) "+s.SQL, s.Args...).Scan(&raw); err != nil {
			t.Fatalf("%s: explain %s: %v", when, s.Name, err)
		}
		var plans []struct{ Plan planNode }
		if err := json.Unmarshal(raw, &plans); err != nil {
			t.Fatal(err)
		}
		if seq := plans[0].Plan.seqScans(); len(seq) > 0 {
			t.Errorf("%s: %s plan scans %s sequentially:\n%s", when, s.Name, strings.Join(seq, ", "), raw)
		}
	}
}

// seqScans lists the queue tables the plan reads by sequential scan.
func (n planNode) seqScans() []string {
	var out []string
	if n.NodeType == "Seq Scan" && (n.Relation == "jobs" || n.Relation == "job_queue") {
		out = append(out, fmt.Sprintf("%s (%s)", n.Relation, n.NodeType))
	}
	for _, c := range n.Plans {
		out = append(out, c.seqScans()...)
	}
	return out
}
