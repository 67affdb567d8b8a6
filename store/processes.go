package store

import (
	"context"
	"fmt"
	"time"
)

// ProcessKind says what a registered process does.
type ProcessKind string

// The kinds of process in the registry.
const (
	// KindAPI is a `jobsd serve` process: the API processes divide the
	// per-user limits by their number, and hold the waiters.
	KindAPI ProcessKind = "api"
	// KindWorker is a `jobsd worker` process or a Lambda instance: the
	// admin API lists them.
	KindWorker ProcessKind = "worker"
)

// Process is a process's entry in the registry of live processes.
type Process struct {
	ID          string      `db:"id"`
	Kind        ProcessKind `db:"kind"`
	Host        string      `db:"host"`
	PID         int         `db:"pid"`
	Version     string      `db:"version"`
	Concurrency int         `db:"concurrency"` // 0 for an API process
	InFlight    int         `db:"in_flight"`   // 0 for an API process
	StartedAt   time.Time   `db:"started_at"`
	LastSeenAt  time.Time   `db:"last_seen_at"` // set by the database
}

// APIProcessSeenWithin is how recent an API process's last heartbeat must be
// for it to count as live: three of its 10 s heartbeats.
const APIProcessSeenWithin = 30 * time.Second

// WorkerSeenWithin is how recent a worker's last heartbeat must be for it
// to be listed as live.
const WorkerSeenWithin = time.Minute

// SeenWithin is how recent the last heartbeat of a process of this kind
// must be for it to count as live.
func SeenWithin(kind ProcessKind) time.Duration {
	if kind == KindAPI {
		return APIProcessSeenWithin
	}
	return WorkerSeenWithin
}

// processForgetAfter is how long the entry of a process that vanished
// without unregistering (killed, cut off) is kept before a live one deletes
// it, and with it (ON DELETE CASCADE) the rows of the waiters an API process
// never closed, which stopped counting once it was no longer live.
const processForgetAfter = 24 * time.Hour

// RegisterProcess records (or refreshes) the process's entry, stamped with
// the database's clock, forgets processes silent for a day, and returns how
// many processes of its kind are live (seen within SeenWithin), this one
// included: one round trip per heartbeat gives both.
func (s *Store) RegisterProcess(ctx context.Context, p Process) (live int, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	// The statement's snapshot does not see its own upsert, so the count
	// is of the others, plus one.
	err = s.db.GetContext(ctx, &live, `
		WITH forgotten AS (DELETE FROM processes WHERE last_seen_at < now() - make_interval(secs => $10)),
		upsert AS (
			INSERT INTO processes (id, kind, host, pid, version, concurrency, in_flight, started_at, last_seen_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())
			ON CONFLICT (id) DO UPDATE SET concurrency = EXCLUDED.concurrency, in_flight = EXCLUDED.in_flight,
				last_seen_at = now())
		SELECT 1 + count(*) FROM processes
		WHERE kind = $2 AND id <> $1 AND last_seen_at >= now() - make_interval(secs => $9)`,
		p.ID, p.Kind, p.Host, p.PID, p.Version, p.Concurrency, p.InFlight, p.StartedAt,
		SeenWithin(p.Kind).Seconds(), processForgetAfter.Seconds())
	if err != nil {
		return 0, fmt.Errorf("register %s process: %w", p.Kind, classify(err))
	}
	return live, nil
}

// UnregisterProcess removes the process's entry, and the rows of its
// waiters with it: it stopped cleanly.
func (s *Store) UnregisterProcess(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if _, err := s.db.ExecContext(ctx, `DELETE FROM processes WHERE id = $1`, id); err != nil {
		return fmt.Errorf("unregister process: %w", classify(err))
	}
	return nil
}

// Processes lists the live processes of a kind (seen within SeenWithin),
// oldest start first.
func (s *Store) Processes(ctx context.Context, kind ProcessKind) ([]Process, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	out := []Process{}
	err := s.db.SelectContext(ctx, &out, `
		SELECT id, kind, host, pid, version, concurrency, in_flight, started_at, last_seen_at FROM processes
		WHERE kind = $1 AND last_seen_at >= now() - make_interval(secs => $2)
		ORDER BY started_at, id`, kind, SeenWithin(kind).Seconds())
	if err != nil {
		return nil, fmt.Errorf("list %s processes: %w", kind, classify(err))
	}
	for i := range out {
		out[i].StartedAt, out[i].LastSeenAt = out[i].StartedAt.UTC(), out[i].LastSeenAt.UTC()
	}
	return out, nil
}

// countLive is how many processes of a kind are live, for the stats.
func (s *Store) countLive(ctx context.Context, kind ProcessKind) (n int, err error) {
	err = s.db.GetContext(ctx, &n, `SELECT count(*) FROM processes
		WHERE kind = $1 AND last_seen_at >= now() - make_interval(secs => $2)`, kind, SeenWithin(kind).Seconds())
	return n, err
}
