package store

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/lib/pq"
)

// OpenWaiter records an open waiter (a long poll that waits, an event
// stream) of user, held by the API process with the given registry id,
// unless the user already has capacity waiters held by live API processes
// (seen within APIProcessSeenWithin): then ok is false and nothing is
// written. One round trip; concurrent opens for one user are serialised in
// the database (see open_waiter in migration 00010), so they never pass the
// cap together. The process's registry entry must exist (RegisterProcess)
// or the insert fails.
//
// The id is chosen here, at random (positive, never 0), and returned with
// an error too: the statement may have committed before the error (the
// connection lost after the commit), and a caller that closes the id then
// leaves no row counting against the user.
func (s *Store) OpenWaiter(ctx context.Context, user, process string, capacity int) (id int64, ok bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	id = rand.Int64N(math.MaxInt64) + 1
	err = s.db.GetContext(ctx, &ok, `SELECT open_waiter($1, $2, $3, $4, $5)`,
		id, user, process, capacity, APIProcessSeenWithin.Seconds())
	if err != nil {
		return id, false, fmt.Errorf("open waiter: %w", classify(err))
	}
	return id, ok, nil
}

// CloseWaiter deletes the waiters with these ids: they ended. Ids already
// gone (their process's entry was deleted) are no error.
func (s *Store) CloseWaiter(ctx context.Context, ids ...int64) error {
	if len(ids) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if _, err := s.db.ExecContext(ctx, `DELETE FROM waiters WHERE id = ANY($1)`, pq.Array(ids)); err != nil {
		return fmt.Errorf("close waiter: %w", classify(err))
	}
	return nil
}
