package store_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
)

// TestQueueBacklog: the delivery loop's cue to yield counts only the jobs
// due and unclaimed: not those claimed, nor a retry whose backoff has not
// run out.
func TestQueueBacklog(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	backlog := func(atLeast int) bool {
		t.Helper()
		b, err := st.QueueBacklog(ctx, atLeast)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for range 5 {
		if _, _, err := st.Create(ctx, store.NewJob{UserID: "alice", Type: job.TypeAIPreview, Input: []byte(`{"prompt":"x"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	if !backlog(5) || backlog(6) {
		t.Fatalf("5 due jobs: backlog(5) = %v, backlog(6) = %v; want true, false", backlog(5), backlog(6))
	}
	if backlog(0) {
		t.Error("backlog(0) = true: 0 must mean never")
	}
	if _, _, err := st.Claim(ctx, store.ClaimRequest{Worker: "w", N: 2, Lease: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if !backlog(3) || backlog(4) {
		t.Errorf("3 due after claiming 2: backlog(3) = %v, backlog(4) = %v; want true, false", backlog(3), backlog(4))
	}
	if _, err := st.DB().Exec(`UPDATE job_queue SET run_after = now() + interval '1 hour'`); err != nil {
		t.Fatal(err)
	}
	if backlog(1) {
		t.Error("jobs waiting for their retry's backoff counted as due")
	}
}

// TestQueueBacklogPlanIsBounded: on a queue of 100k due jobs, half of them
// claimed since the last vacuum, the count is an index-only scan of the
// claim's index that stops at its limit and does not step over the
// claimed rows' dead entries (a few dozen buffers, not tens of thousands).
func TestQueueBacklogPlanIsBounded(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	db := st.DB()
	if _, err := db.Exec(`INSERT INTO job_queue (id, user_id, run_after)
		SELECT gen_random_uuid(), 'user-' || (i % 100), now() - (100001 - i) * interval '1 ms' FROM generate_series(1, 100000) i`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`VACUUM ANALYZE job_queue`); err != nil {
		t.Fatal(err)
	}
	// Half burnt down: the claims deleted the oldest half (created first,
	// so at the heap's start too), not yet vacuumed.
	if _, err := db.Exec(`DELETE FROM job_queue WHERE id IN (SELECT id FROM job_queue ORDER BY run_after, id LIMIT 50000)`); err != nil {
		t.Fatal(err)
	}
	var raw []byte
	if err := db.QueryRow("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "+store.QueueBacklogSQL(), 1000).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	var tree []struct{ Plan planWithRows }
	if err := json.Unmarshal(raw, &tree); err != nil {
		t.Fatal(err)
	}
	scans := tree[0].Plan.find(func(n planWithRows) bool { return n.Relation == "job_queue" })
	if len(scans) != 1 || scans[0].NodeType != "Index Only Scan" || scans[0].SharedHitBlocks+scans[0].SharedReadBlocks > 200 || scans[0].Index != "job_queue_claimable_idx" || scans[0].ActualRows > 1000 {
		t.Errorf("the backlog count does not stop at its limit on the claim's index:\n%s", raw)
	}
	t.Logf("plan: %s", raw)
}

// planWithRows is a node of EXPLAIN (ANALYZE, FORMAT JSON) with its index
// and rows.
type planWithRows struct {
	NodeType   string  `json:"Node Type"`
	Relation   string  `json:"Relation Name"`
	Index      string  `json:"Index Name"`
	ActualRows float64 `json:"Actual Rows"`
	// SharedHitBlocks and SharedReadBlocks: the buffers it read.
	SharedHitBlocks  float64        `json:"Shared Hit Blocks"`
	SharedReadBlocks float64        `json:"Shared Read Blocks"`
	Plans            []planWithRows `json:"Plans"`
}

func (n planWithRows) find(match func(planWithRows) bool) []planWithRows {
	var out []planWithRows
	if match(n) {
		out = append(out, n)
	}
	for _, c := range n.Plans {
		out = append(out, c.find(match)...)
	}
	return out
}
