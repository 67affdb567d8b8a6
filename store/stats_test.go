package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
)

// exactCounts is the queue by a plain full-table count: the truth that
// QueueStats, which reads only the partial indexes, must agree with.
func exactCounts(t testing.TB, st *store.Store) map[job.Status]map[job.Type]int64 {
	t.Helper()
	rows, err := st.DB().Query(`SELECT status, type, count(*) FROM jobs
		WHERE status IN ('PENDING', 'PROCESSING') GROUP BY status, type`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[job.Status]map[job.Type]int64{}
	for rows.Next() {
		var s job.Status
		var typ job.Type
		var n int64
		if err := rows.Scan(&s, &typ, &n); err != nil {
			t.Fatal(err)
		}
		if out[s] == nil {
			out[s] = map[job.Type]int64{}
		}
		out[s][typ] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestQueueStats: counts per status and type agree with a full count
// (leased and unleased PROCESSING jobs both counted, finished jobs not),
// the oldest PENDING job's age comes from the database, and a cap makes
// the counts lower bounds and says so.
func TestQueueStats(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()

	empty, err := st.QueueStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(empty.Counts) != 0 || empty.OldestPendingAge != 0 || empty.Capped {
		t.Errorf("empty queue: %+v", empty)
	}

	create := func(typ job.Type) string {
		t.Helper()
		j, _, err := st.Create(ctx, store.NewJob{UserID: "alice", Type: typ, Input: []byte(`{"prompt":"x"}`)})
		if err != nil {
			t.Fatal(err)
		}
		return j.ID.String()
	}
	for _, typ := range []job.Type{job.TypeAIPreview, job.TypeAIPreview, job.TypeRiskAnalysis, job.TypeParseDocument} {
		create(typ)
	}
	// Two jobs under a lease (PROCESSING, a claim in job_leases).
	if claimed, _, err := st.Claim(ctx, store.ClaimRequest{Worker: "w", N: 2, Lease: time.Minute}); err != nil || len(claimed) != 2 {
		t.Fatalf("claim: %d, %v", len(claimed), err)
	}
	// One PROCESSING job waiting for its retry, with no lease.
	retrying := create(job.TypeGapDetection)
	mustExec(t, st, `WITH q AS (UPDATE job_queue SET run_after = now() + interval '1 minute' WHERE id = $1)
		UPDATE jobs SET status = 'PROCESSING', attempts = 1, started_at = now(),
		run_after = now() + interval '1 minute' WHERE id = $1`, retrying)
	// Finished jobs are not counted.
	for _, typ := range []job.Type{job.TypeAIPreview, job.TypeReportGeneration} {
		mustExec(t, st, `WITH q AS (DELETE FROM job_queue WHERE id = $1)
			UPDATE jobs SET status = 'COMPLETED', result = '{}', completed_at = now() WHERE id = $1`, create(typ))
	}
	// The oldest PENDING job was created an hour ago.
	old := create(job.TypeRiskAnalysis)
	mustExec(t, st, `WITH q AS (UPDATE job_queue SET run_after = now() - interval '1 hour' WHERE id = $1)
		UPDATE jobs SET created_at = now() - interval '1 hour', run_after = now() - interval '1 hour' WHERE id = $1`, old)

	got, err := st.QueueStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := exactCounts(t, st)
	if diff := cmp.Diff(want, got.Counts); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	if got.Counts[job.StatusProcessing][job.TypeGapDetection] != 1 {
		t.Errorf("the retrying PROCESSING job is not counted: %v", got.Counts)
	}
	if got.OldestPendingAge < time.Hour || got.OldestPendingAge > time.Hour+time.Minute {
		t.Errorf("oldest pending age = %v, want about 1h", got.OldestPendingAge)
	}
	if got.Capped {
		t.Error("capped with 7 unfinished jobs")
	}

	capped, err := st.QueueStatsLimit(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if !capped.Capped {
		t.Error("a cap of 2 with 5 unleased jobs is not reported")
	}
	var n int64
	for _, byType := range capped.Counts {
		for _, c := range byType {
			n += c
		}
	}
	if n > 4 { // at most the cap from each of the two scans
		t.Errorf("capped counts sum to %d, want at most 4", n)
	}
	// The capped scan reads the earliest-runnable jobs first, so it still
	// finds the oldest PENDING one.
	if capped.OldestPendingAge < time.Hour {
		t.Errorf("capped oldest pending age = %v, want about 1h", capped.OldestPendingAge)
	}
}

func mustExec(t testing.TB, st *store.Store, q string, args ...any) {
	t.Helper()
	if _, err := st.DB().Exec(q, args...); err != nil {
		t.Fatal(err)
	}
}

// A long-lived table: a million jobs, nearly all finished, and a backlog
// of some thousands, as a scrape finds it.
const (
	seedTotal      = 1_000_000
	seedPending    = 8_000
	seedLeased     = 1_000 // PROCESSING under a lease
	seedRetrying   = 1_000 // PROCESSING waiting for a retry
	seedUnfinished = seedPending + seedLeased + seedRetrying
)

// seedLongLived fills a fresh database with generate_series: finished jobs
// spread over a day, then the unfinished ones, then VACUUM ANALYZE, as
// autovacuum would leave a table this size.
func seedLongLived(tb testing.TB) *store.Store {
	tb.Helper()
	st, _ := pgtest.NewStore(tb)
	start := time.Now()
	const cols = `INSERT INTO jobs (id, user_id, type, status, input, result, attempts, created_at, started_at,
		completed_at, updated_at, run_after, lease_owner, lease_expires_at) `
	const typ = `(ARRAY['AI_PREVIEW','PARSE_DOCUMENT','GAP_DETECTION','RISK_ANALYSIS','REPORT_GENERATION'])[1 + g % 5]`
	for _, q := range []string{
		cols + `SELECT gen_random_uuid(), 'user' || (g % 5000), ` + typ + `, 'COMPLETED',
			'{"prompt":"Summarise the risks of maize farming"}', '{"output":"Local preview"}', 1,
			now() - interval '1 day' + g * interval '80 ms', now() - interval '1 day' + g * interval '80 ms',
			now() - interval '1 day' + g * interval '80 ms', now() - interval '1 day' + g * interval '80 ms',
			now() - interval '1 day' + g * interval '80 ms', NULL, NULL
			FROM generate_series(1, ` + fmt.Sprint(seedTotal-seedUnfinished) + `) g`,
		cols + `SELECT gen_random_uuid(), 'user' || (g % 5000), ` + typ + `, 'PENDING', '{"prompt":"x"}', NULL, 0,
			now() - g * interval '10 ms', NULL, NULL, now(), now() - g * interval '10 ms', NULL, NULL
			FROM generate_series(1, ` + fmt.Sprint(seedPending) + `) g`,
		cols + `SELECT gen_random_uuid(), 'user' || (g % 5000), ` + typ + `, 'PROCESSING', '{"prompt":"x"}', NULL, 1,
			now() - interval '1 minute', now(), NULL, now(), now() - interval '1 minute', gen_random_uuid(), now() + interval '1 hour'
			FROM generate_series(1, ` + fmt.Sprint(seedLeased) + `) g`,
		cols + `SELECT gen_random_uuid(), 'user' || (g % 5000), ` + typ + `, 'PROCESSING', '{"prompt":"x"}', NULL, 1,
			now() - interval '1 minute', now(), NULL, now(), now() + interval '1 minute', NULL, NULL
			FROM generate_series(1, ` + fmt.Sprint(seedRetrying) + `) g`,
		// The leased jobs are under claims of one job each, as the queue
		// would have them.
		`WITH held AS (DELETE FROM job_queue q USING jobs j WHERE j.id = q.id AND j.lease_owner IS NOT NULL
			RETURNING q.id, q.user_id, j.lease_owner)
		INSERT INTO job_leases (lease, worker_id, expires_at, ids)
		SELECT lease_owner, 'seed', now() + interval '1 hour', ARRAY[id] FROM held`,
		`VACUUM ANALYZE jobs`,
	} {
		mustExec(tb, st, q)
	}
	tb.Logf("seeded %d jobs (%d unfinished) in %v", seedTotal, seedUnfinished, time.Since(start).Round(time.Millisecond))
	return st
}

// planNode is the part of EXPLAIN (FORMAT JSON) that says what was read.
type planNode struct {
	NodeType       string     `json:"Node Type"`
	Relation       string     `json:"Relation Name"`
	Index          string     `json:"Index Name"`
	ActualRows     float64    `json:"Actual Rows"`
	ActualLoops    float64    `json:"Actual Loops"`
	RemovedByFiltr float64    `json:"Rows Removed by Filter"`
	Plans          []planNode `json:"Plans"`
}

// TestQueueStatsCost checks, on a million-row table that is nearly all
// finished jobs, that the statement behind every scrape reads the jobs
// table only through the queue and reads no more rows than there
// are unfinished jobs. (It asserts what is read, not how long it takes; the
// time is BenchmarkQueueStats's.)
func TestQueueStatsCost(t *testing.T) {
	if testing.Short() {
		t.Skip("seeds a million rows")
	}
	st := seedLongLived(t)
	var raw string
	if err := st.DB().Get(&raw, `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) `+store.QueueStatsSQL, store.QueueStatsCap); err != nil {
		t.Fatal(err)
	}
	var plans []struct{ Plan planNode }
	if err := json.Unmarshal([]byte(raw), &plans); err != nil {
		t.Fatal(err)
	}
	var read float64
	var indexes []string
	var walk func(n planNode)
	walk = func(n planNode) {
		if n.Relation == "jobs" {
			if !strings.Contains(n.NodeType, "Index") {
				t.Errorf("%s on jobs: the scrape's query reads the table, not a partial index", n.NodeType)
			}
			indexes = append(indexes, n.Index)
			read += (n.ActualRows + n.RemovedByFiltr) * max(n.ActualLoops, 1)
		}
		for _, c := range n.Plans {
			walk(c)
		}
	}
	walk(plans[0].Plan)
	t.Logf("jobs read through %v: %.0f rows of %d (%d unfinished)", indexes, read, seedTotal, seedUnfinished)
	if read > seedUnfinished {
		t.Errorf("read %.0f rows of jobs, more than the %d unfinished ones", read, seedUnfinished)
	}
	var text []string
	if err := st.DB().Select(&text, `EXPLAIN (ANALYZE, BUFFERS) `+store.QueueStatsSQL, store.QueueStatsCap); err != nil {
		t.Fatal(err)
	}
	t.Logf("plan:\n%s", strings.Join(text, "\n"))

	got, err := st.QueueStats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(exactCounts(t, st), got.Counts); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
}

// BenchmarkQueueStats is the database cost of one refresh of the queue
// gauges (one per QueueStatsTTL however often Prometheus scrapes) on a
// million-row table with 10,000 unfinished jobs: after VACUUM, and with
// 20,000 more jobs finished since the last VACUUM, whose dead entries the
// claimable index still holds.
//
//	go test -run '^$' -bench QueueStats -benchtime 200x ./store/
func BenchmarkQueueStats(b *testing.B) {
	if testing.Short() {
		b.Skip("seeds a million rows")
	}
	st := seedLongLived(b)
	mustExec(b, st, `ALTER TABLE jobs SET (autovacuum_enabled = false)`)
	ctx := context.Background()
	run := func(b *testing.B) {
		for b.Loop() {
			if _, err := st.QueueStats(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("vacuumed", run)
	mustExec(b, st, `INSERT INTO jobs (id, user_id, type, input, created_at, run_after)
		SELECT gen_random_uuid(), 'churn', 'AI_PREVIEW', '{"prompt":"x"}', now() - interval '2 hours', now() - interval '2 hours'
		FROM generate_series(1, 20000)`)
	mustExec(b, st, `WITH q AS (DELETE FROM job_queue WHERE user_id = 'churn')
		UPDATE jobs SET status = 'COMPLETED', result = '{}', completed_at = now() WHERE user_id = 'churn'`)
	b.Run("20k-dead-index-entries", run)
}
