package store

import (
	"context"
	"fmt"
	"time"
)

// APIProcess is a `jobsd serve` process's entry in the registry of live API
// processes.
type APIProcess struct {
	ID         string    `db:"id"`
	Host       string    `db:"host"`
	PID        int       `db:"pid"`
	StartedAt  time.Time `db:"started_at"`
	LastSeenAt time.Time `db:"last_seen_at"` // set by the database
}

// APIProcessSeenWithin is how recent an API process's last heartbeat must be
// for it to count as live: three of its 10 s heartbeats.
const APIProcessSeenWithin = 30 * time.Second

// apiProcessForgetAfter is how long the entry of an API process that
// vanished without unregistering (killed, cut off) is kept before a live one
// deletes it, and with it (ON DELETE CASCADE) the rows of the waiters it
// never closed, which stopped counting once it was no longer live.
const apiProcessForgetAfter = 24 * time.Hour

// RegisterAPIProcess records (or refreshes) the process's entry, stamped with
// the database's clock, forgets processes silent for a day, and returns how
// many API processes are live (seen within APIProcessSeenWithin), this one
// included: one round trip per heartbeat gives both.
func (s *Store) RegisterAPIProcess(ctx context.Context, p APIProcess) (live int, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	// The statement's snapshot does not see its own upsert, so the count
	// is of the others, plus one.
	err = s.db.GetContext(ctx, &live, `
		WITH forgotten AS (DELETE FROM api_processes WHERE last_seen_at < now() - make_interval(secs => $6)),
		upsert AS (
			INSERT INTO api_processes (id, host, pid, started_at, last_seen_at)
			VALUES ($1, $2, $3, $4, now())
			ON CONFLICT (id) DO UPDATE SET last_seen_at = now())
		SELECT 1 + count(*) FROM api_processes
		WHERE id <> $1 AND last_seen_at >= now() - make_interval(secs => $5)`,
		p.ID, p.Host, p.PID, p.StartedAt, APIProcessSeenWithin.Seconds(), apiProcessForgetAfter.Seconds())
	if err != nil {
		return 0, fmt.Errorf("register api process: %w", classify(err))
	}
	return live, nil
}

// UnregisterAPIProcess removes the process's entry, and the rows of its
// waiters with it: it stopped cleanly.
func (s *Store) UnregisterAPIProcess(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if _, err := s.db.ExecContext(ctx, `DELETE FROM api_processes WHERE id = $1`, id); err != nil {
		return fmt.Errorf("unregister api process: %w", classify(err))
	}
	return nil
}

// APIProcesses lists the API processes seen within APIProcessSeenWithin,
// oldest start first.
func (s *Store) APIProcesses(ctx context.Context) ([]APIProcess, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	out := []APIProcess{}
	err := s.db.SelectContext(ctx, &out, `
		SELECT id, host, pid, started_at, last_seen_at FROM api_processes
		WHERE last_seen_at >= now() - make_interval(secs => $1)
		ORDER BY started_at, id`, APIProcessSeenWithin.Seconds())
	if err != nil {
		return nil, fmt.Errorf("list api processes: %w", classify(err))
	}
	for i := range out {
		out[i].StartedAt, out[i].LastSeenAt = out[i].StartedAt.UTC(), out[i].LastSeenAt.UTC()
	}
	return out, nil
}
