package store

import (
	"context"
	"fmt"
	"time"
)

// WorkerInfo is a worker process's entry in the registry.
type WorkerInfo struct {
	ID          string    `db:"id"`
	Host        string    `db:"host"`
	PID         int       `db:"pid"`
	Version     string    `db:"version"`
	Concurrency int       `db:"concurrency"`
	InFlight    int       `db:"in_flight"`
	StartedAt   time.Time `db:"started_at"`
	LastSeenAt  time.Time `db:"last_seen_at"` // set by the database
}

// WorkerSeenWithin is how recent a worker's last heartbeat must be for it
// to be listed as live.
const WorkerSeenWithin = time.Minute

// workerForgetAfter is how long the entry of a worker that vanished without
// unregistering (killed, cut off) is kept before a live worker deletes it.
const workerForgetAfter = 24 * time.Hour

// RegisterWorker records (or refreshes) the worker's entry, stamped with the
// database's clock, and forgets workers silent for a day.
func (s *Store) RegisterWorker(ctx context.Context, w WorkerInfo) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	_, err := s.db.ExecContext(ctx, `
		WITH forgotten AS (DELETE FROM workers WHERE last_seen_at < now() - make_interval(secs => $8))
		INSERT INTO workers (id, host, pid, version, concurrency, in_flight, started_at, last_seen_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, now())
		ON CONFLICT (id) DO UPDATE SET in_flight = EXCLUDED.in_flight, concurrency = EXCLUDED.concurrency,
			last_seen_at = now()`,
		w.ID, w.Host, w.PID, w.Version, w.Concurrency, w.InFlight, w.StartedAt, workerForgetAfter.Seconds())
	if err != nil {
		return fmt.Errorf("register worker: %w", classify(err))
	}
	return nil
}

// UnregisterWorker removes the worker's entry: it stopped cleanly.
func (s *Store) UnregisterWorker(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if _, err := s.db.ExecContext(ctx, `DELETE FROM workers WHERE id = $1`, id); err != nil {
		return fmt.Errorf("unregister worker: %w", classify(err))
	}
	return nil
}

// Workers lists the workers seen within WorkerSeenWithin, oldest start first.
func (s *Store) Workers(ctx context.Context) ([]WorkerInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	out := []WorkerInfo{}
	err := s.db.SelectContext(ctx, &out, `
		SELECT id, host, pid, version, concurrency, in_flight, started_at, last_seen_at FROM workers
		WHERE last_seen_at >= now() - make_interval(secs => $1)
		ORDER BY started_at, id`, WorkerSeenWithin.Seconds())
	if err != nil {
		return nil, fmt.Errorf("list workers: %w", classify(err))
	}
	for i := range out {
		out[i].StartedAt, out[i].LastSeenAt = out[i].StartedAt.UTC(), out[i].LastSeenAt.UTC()
	}
	return out, nil
}
