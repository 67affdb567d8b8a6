package store

import "context"

// QueueStatsSQL is the statement QueueStats runs, for the plan check.
const QueueStatsSQL = queueStatsSQL

// QueueStatsLimit is QueueStats with another cap, for the capping test.
func (s *Store) QueueStatsLimit(ctx context.Context, limit int) (QueueStats, error) {
	return s.queueStats(ctx, limit)
}
