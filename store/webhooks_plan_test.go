package store_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
)

// webhookPlanNode is a node of EXPLAIN (ANALYZE, FORMAT JSON).
type webhookPlanNode struct {
	NodeType      string            `json:"Node Type"`
	Relation      string            `json:"Relation Name"`
	Parent        string            `json:"Parent Relationship"`
	OneTimeFilter string            `json:"One-Time Filter"`
	ActualLoops   float64           `json:"Actual Loops"`
	Plans         []webhookPlanNode `json:"Plans"`
}

// find returns the nodes of the tree that match.
func (n webhookPlanNode) find(match func(webhookPlanNode) bool) []webhookPlanNode {
	var out []webhookPlanNode
	if match(n) {
		out = append(out, n)
	}
	for _, c := range n.Plans {
		out = append(out, c.find(match)...)
	}
	return out
}

// TestOutcomeWebhookEventsAreFreeWithoutEndpoints: while no user has an
// endpoint, the outcome statement's outbox insert is cut off by its
// one-time filter: the ended jobs are never scanned for it (EXPLAIN ANALYZE
// of a batch of 200 outcomes). With an endpoint they are, into one row.
func TestOutcomeWebhookEventsAreFreeWithoutEndpoints(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	ctx := t.Context()
	plan := func() webhookPlanNode {
		t.Helper()
		for range 200 {
			if _, _, err := st.Create(ctx, store.NewJob{UserID: "alice", Type: job.TypeAIPreview, Input: []byte(`{"prompt":"x"}`)}); err != nil {
				t.Fatal(err)
			}
		}
		claimed, _, err := st.Claim(ctx, store.ClaimRequest{Worker: "w", N: 200, Lease: time.Minute})
		if err != nil || len(claimed) != 200 {
			t.Fatalf("claim: %d, %v", len(claimed), err)
		}
		ids, leases, kinds, texts, backoffs := make([]string, 200), make([]string, 200), make([]string, 200), make([]string, 200), make([]float64, 200)
		for i, c := range claimed {
			ids[i], leases[i], kinds[i], texts[i] = c.ID.String(), c.Lease.String(), "completed", "{}"
		}
		tx, err := st.DB().Begin()
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		var raw []byte
		if err := tx.QueryRow("EXPLAIN (ANALYZE, FORMAT JSON) "+store.FinishSQL(),
			pq.Array(ids), pq.Array(leases), pq.Array(kinds), pq.Array(texts), pq.Array(texts), pq.Array(backoffs)).Scan(&raw); err != nil {
			t.Fatal(err)
		}
		var plans []struct{ Plan webhookPlanNode }
		if err := json.Unmarshal(raw, &plans); err != nil {
			t.Fatal(err)
		}
		return plans[0].Plan
	}
	insertOf := func(p webhookPlanNode) webhookPlanNode {
		t.Helper()
		ins := p.find(func(n webhookPlanNode) bool { return n.NodeType == "ModifyTable" && n.Relation == "webhook_outbox" })
		if len(ins) != 1 {
			t.Fatalf("%d inserts into webhook_outbox in the plan", len(ins))
		}
		return ins[0]
	}
	// The scans of the ended jobs (the CTE done) under the insert, outside
	// its InitPlan: how often they were scanned for the outbox row.
	joinRuns := func(ins webhookPlanNode) float64 {
		var loops float64
		for _, c := range ins.Plans {
			for _, n := range c.find(func(n webhookPlanNode) bool { return n.NodeType == "CTE Scan" }) {
				loops += n.ActualLoops
			}
		}
		return loops
	}

	ins := insertOf(plan())
	if len(ins.find(func(n webhookPlanNode) bool { return n.OneTimeFilter != "" })) == 0 {
		t.Errorf("no one-time filter under the webhook insert:\n%s", dump(ins))
	}
	if runs := joinRuns(ins); runs != 0 {
		t.Errorf("without endpoints the outbox insert scanned the ended jobs %v times, want never:\n%s", runs, dump(ins))
	}

	newWebhook(t, st, "bob")
	ins = insertOf(plan())
	if runs := joinRuns(ins); runs == 0 {
		t.Errorf("with an endpoint the outbox insert never scanned the ended jobs:\n%s", dump(ins))
	}
	if seq := ins.find(func(n webhookPlanNode) bool { return n.NodeType == "Seq Scan" && n.Relation == "jobs" }); len(seq) > 0 {
		t.Errorf("the webhook insert scans jobs sequentially:\n%s", dump(ins))
	}
}

func dump(n webhookPlanNode) string {
	var b strings.Builder
	var walk func(n webhookPlanNode, depth int)
	walk = func(n webhookPlanNode, depth int) {
		fmt.Fprintf(&b, "%s%s %s [%s] loops=%v filter=%q\n", strings.Repeat("  ", depth), n.NodeType, n.Relation, n.Parent, n.ActualLoops, n.OneTimeFilter)
		for _, c := range n.Plans {
			walk(c, depth+1)
		}
	}
	walk(n, 0)
	return b.String()
}

// TestOutboxExpansionReadsJobsByKey: the expansion of an outbox row reads
// each job by its key however stale the statistics of jobs are. The bench
// analyses jobs while every job is PENDING, then ends them; joined freely,
// the planner took the ended jobs for none and scanned jobs once per id
// (over 5 s for a 500-job row).
func TestOutboxExpansionReadsJobsByKey(t *testing.T) {
	st, _ := pgtest.NewStore(t)
	newWebhook(t, st, "user-0")
	db := st.DB()
	if _, err := db.Exec(`INSERT INTO jobs (id, user_id, type, input)
		SELECT gen_random_uuid(), 'user-0', 'AI_PREVIEW', '{"prompt":"x"}' FROM generate_series(1, 20000)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`ANALYZE jobs`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE jobs SET status = 'COMPLETED', completed_at = now(), result = '{}'`); err != nil {
		t.Fatal(err)
	}
	var ids []string
	if err := db.Select(&ids, `SELECT id::text FROM jobs LIMIT 500`); err != nil {
		t.Fatal(err)
	}
	batch := make([]int64, len(ids))
	for i := range batch {
		batch[i] = 1
	}
	var raw []byte
	if err := db.QueryRow("EXPLAIN (ANALYZE, FORMAT JSON) "+store.ExpandOutboxSQL(),
		pq.Array(ids), pq.Array(batch), pq.Array([]string{time.Now().UTC().Format(time.RFC3339Nano)})).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	var plans []struct{ Plan webhookPlanNode }
	if err := json.Unmarshal(raw, &plans); err != nil {
		t.Fatal(err)
	}
	p := plans[0].Plan
	if seq := p.find(func(n webhookPlanNode) bool { return n.NodeType == "Seq Scan" && n.Relation == "jobs" }); len(seq) > 0 {
		t.Errorf("the expansion scans jobs:\n%s", dump(p))
	}
	if byKey := p.find(func(n webhookPlanNode) bool { return n.Relation == "jobs" && strings.Contains(n.NodeType, "Index") }); len(byKey) == 0 {
		t.Errorf("the expansion does not read jobs by key:\n%s", dump(p))
	}
}
