package store_test

import (
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

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
// job_queue or jobs: the plan made for its arguments, and the generic plan
// that PostgreSQL switches to for a prepared statement (the worker
// prepares its claims and outcomes, prepared.go) once that costs no more.
func checkPlans(t *testing.T, db *sqlx.DB, when string, stmts []store.QueueStatement) {
	t.Helper()
	ctx := t.Context()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	if _, err := conn.ExecContext(ctx, `SET plan_cache_mode = force_generic_plan`); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(ctx, `RESET plan_cache_mode`) //nolint:errcheck // the connection goes back to the pool
	for _, s := range stmts {
		var raw []byte
		if err := db.QueryRow("EXPLAIN (FORMAT JSON) "+s.SQL, s.Args...).Scan(&raw); err != nil {
			t.Fatalf("%s: explain %s: %v", when, s.Name, err)
		}
		checkPlan(t, when, s.Name, raw)

		if _, err := conn.ExecContext(ctx, "PREPARE q AS "+s.SQL); err != nil {
			t.Fatalf("%s: prepare %s: %v", when, s.Name, err)
		}
		// EXECUTE takes no parameters of its own: the arguments go as literals.
		literals := make([]string, len(s.Args))
		for i, a := range s.Args {
			literals[i] = sqlLiteral(t, a)
		}
		err := conn.QueryRowContext(ctx, "EXPLAIN (FORMAT JSON) EXECUTE q("+strings.Join(literals, ", ")+")").Scan(&raw)
		if _, derr := conn.ExecContext(ctx, `DEALLOCATE q`); derr != nil {
			t.Fatal(derr)
		}
		if err != nil {
			t.Fatalf("%s: explain the generic plan of %s: %v", when, s.Name, err)
		}
		checkPlan(t, when, s.Name+" (generic plan)", raw)
	}
}

// sqlLiteral is v as a quoted literal, of the type its place gives it.
func sqlLiteral(t *testing.T, v any) string {
	t.Helper()
	if valuer, ok := v.(driver.Valuer); ok {
		var err error
		if v, err = valuer.Value(); err != nil {
			t.Fatal(err)
		}
	}
	switch x := v.(type) {
	case time.Time:
		return pq.QuoteLiteral(x.Format(time.RFC3339Nano))
	case []byte:
		return pq.QuoteLiteral(string(x))
	default:
		return pq.QuoteLiteral(fmt.Sprint(x))
	}
}

func checkPlan(t *testing.T, when, name string, raw []byte) {
	t.Helper()
	var plans []struct{ Plan planNode }
	if err := json.Unmarshal(raw, &plans); err != nil {
		t.Fatal(err)
	}
	if seq := plans[0].Plan.seqScans(); len(seq) > 0 {
		t.Errorf("%s: %s plan scans %s sequentially:\n%s", when, name, strings.Join(seq, ", "), raw)
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
