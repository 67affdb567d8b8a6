package store

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"
)

// QueuedReads is how many Gets wait for a batch slot (for tests).
func (s *Store) QueuedReads() int {
	s.primary.reads.mu.Lock()
	defer s.primary.reads.mu.Unlock()
	return len(s.primary.reads.queue)
}

// SetSlowRead sets how long a status read batch runs before another may
// start beside it (slowRead).
func (s *Store) SetSlowRead(d time.Duration) {
	s.primary.reads.mu.Lock()
	defer s.primary.reads.mu.Unlock()
	s.primary.reads.slow = d
}

// MaxReadBatch is the most reads one status-read statement carries.
const MaxReadBatch = maxReadBatch

// QueueStatement is one of the queue's statements with arguments, for the
// plan tests.
type QueueStatement struct {
	Name string
	SQL  string
	Args []any
}

// QueueStatements are the worker's statements on the queue, with arguments
// like the worker's: claims (one-user and fair, from the head and past a
// cursor; a window claim; by ids), an outcome batch, a heartbeat and a
// rescue.
func QueueStatements(ids, leases []string, cursor QueueKey) []QueueStatement {
	kinds, texts, backoffs := make([]string, len(ids)), make([]string, len(ids)), make([]float64, len(ids))
	for i := range ids {
		kinds[i] = string(OutcomeCompleted)
	}
	return []QueueStatement{
		{"claim", claimSQLs[0][0], []any{500, 30.0, "w", ""}},
		{"claim past the cursor", claimSQLs[1][0], []any{500, 30.0, "w", "", cursor.RunAfter, cursor.ID}},
		{"capped claim", claimSQLs[0][1], []any{500, 30.0, "w", "", 5}},
		{"window claim", windowClaimSQLs[1], []any{500, 30.0, "w", 2, cursor.RunAfter, cursor.ID}},
		// An SQS batch: at most 10 messages.
		{"claim by ids", claimIDsSQL, []any{pq.Array(ids[:min(10, len(ids))]), 30.0, "w"}},
		{"finish", finishSQL, []any{pq.Array(ids), pq.Array(leases), pq.Array(kinds), pq.Array(texts), pq.Array(texts), pq.Array(backoffs)}},
		{"heartbeat", heartbeatSQL, []any{pq.Array(ids), pq.Array(leases), 30.0, pq.Array(leases[:1])}},
		{"rescue", rescueSQL, []any{"lost", 1.0}},
	}
}

// FinishSQL is the worker's outcome statement, for the plan tests.
func FinishSQL() string { return finishSQL }

// ExpandOutboxSQL is the statement that expands claimed outbox rows: $1
// job ids, $2 the batch of each (1-based), $3 each batch's occurred_at.
func ExpandOutboxSQL() string { return expandOutboxSQL }

// OpenPollDB is the status reads' pool (pollconn.go), for the benchmark.
var OpenPollDB = openPollDB

// ReadBatch reads ids as one batch of the user's status reads (the batched
// statement, even for one id), for the plan-cache test.
func (s *Store) ReadBatch(user string, ids ...uuid.UUID) error {
	batch := make([]*pendingRead, len(ids))
	for i, id := range ids {
		batch[i] = &pendingRead{user: user, id: id, deadline: time.Now().Add(s.primary.timeout)}
	}
	_, err := s.primary.getMany(batch, false)
	return err
}

// BatchReadPlans is how PostgreSQL planned the batched status read so far on
// the status reads' connection (a one-slot store has one): generic and
// custom plans, as pg_prepared_statements counts them.
func (s *Store) BatchReadPlans(ctx context.Context) (generic, custom int64, err error) {
	err = s.primary.polls.QueryRowContext(ctx, `SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1`,
		getJobsSQL).Scan(&generic, &custom)
	return generic, custom, err
}

// QueueBacklogSQL exposes the statement of QueueBacklog, for its plan.
func QueueBacklogSQL() string { return queueBacklogSQL }
