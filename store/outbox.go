package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"
)

// outbox is Create's side of the outbox table (migration 00007): with
// JOBS_DISPATCH=sqs every new job owes one queue message, and the row that
// says so is inserted by the statement that inserts the job, so the two
// commit together or not at all.
type outbox struct {
	on   bool
	poke chan struct{} // a row was written: wakes the sender
}

func newOutbox(on bool) outbox {
	return outbox{on: on, poke: make(chan struct{}, 1)}
}

// around wraps an INSERT INTO jobs ... RETURNING jobColumns so that the
// same statement writes the job's outbox row; off, it returns insert as it
// is. An insert that inserts nothing (an idempotent replay) writes no row.
func (o outbox) around(insert string) string {
	if !o.on {
		return insert
	}
	return `WITH j AS (` + insert + `),
		o AS (INSERT INTO outbox (job_id) SELECT id FROM j)
		SELECT * FROM j`
}

// written wakes the sender after a committed outbox row.
func (o outbox) written() {
	if !o.on {
		return
	}
	select {
	case o.poke <- struct{}{}:
	default:
	}
}

// OutboxWritten fires (at most once per wait) after Create wrote an outbox
// row in this process, so a sender can send at once instead of at its next
// sweep.
func (s *Store) OutboxWritten() <-chan struct{} { return s.outbox.poke }

// OutboxMessage is one message owed to the queue: job JobID may be claimed
// after Delay.
type OutboxMessage struct {
	Seq   int64 // the outbox row
	JobID uuid.UUID
	Delay time.Duration // until the row's not_before; 0 when it has passed
}

// SendFunc sends messages and returns the Seq of those the queue accepted;
// an error with some accepted returns those too.
type SendFunc func(ctx context.Context, msgs []OutboxMessage) (sent []int64, err error)

// SendOutbox hands up to limit unsent outbox rows, oldest first, to send
// and deletes those it reports sent, all in one transaction: rows another
// sender holds are skipped (SKIP LOCKED), and a crash before the commit
// leaves the rows for the next sweep, so a message may be sent twice but
// never not at all (the worker skips a job it cannot claim). It returns how
// many were sent.
func (s *Store) SendOutbox(ctx context.Context, limit int, send SendFunc) (int, error) {
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("send outbox: %w", classify(err))
	}
	defer tx.Rollback()
	qctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	// The delay is measured from clock_timestamp(), not now(): now() is
	// when this transaction began, and a Create that started after that
	// and committed before this SELECT has a not_before a few milliseconds
	// past it, which DelaySeconds rounded up to a whole second of delay.
	rows, err := tx.QueryContext(qctx, `
		SELECT id, job_id, GREATEST(EXTRACT(EPOCH FROM not_before - clock_timestamp()), 0)::float8
		FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`, limit)
	if err != nil {
		return 0, fmt.Errorf("read outbox: %w", classify(err))
	}
	defer rows.Close()
	var msgs []OutboxMessage
	for rows.Next() {
		var m OutboxMessage
		var secs float64
		if err := rows.Scan(&m.Seq, &m.JobID, &secs); err != nil {
			return 0, fmt.Errorf("read outbox: %w", classify(err))
		}
		m.Delay = time.Duration(secs * float64(time.Second))
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("read outbox: %w", classify(err))
	}
	if len(msgs) == 0 {
		return 0, nil
	}
	sent, sendErr := send(ctx, msgs)
	if len(sent) > 0 {
		dctx, cancel := context.WithTimeout(ctx, s.timeout)
		defer cancel()
		if _, err := tx.ExecContext(dctx, `DELETE FROM outbox WHERE id = ANY($1)`, pq.Array(sent)); err != nil {
			return 0, fmt.Errorf("delete sent outbox rows: %w", classify(err))
		}
		if err := tx.Commit(); err != nil {
			return 0, fmt.Errorf("delete sent outbox rows: %w", classify(err))
		}
	}
	if sendErr != nil {
		return len(sent), fmt.Errorf("send outbox: %w", sendErr)
	}
	return len(sent), nil
}

// OutboxLen counts the rows not sent yet, for the sweep's log and tests.
func (s *Store) OutboxLen(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var n int
	if err := s.db.GetContext(ctx, &n, `SELECT count(*) FROM outbox`); err != nil {
		return 0, fmt.Errorf("count outbox: %w", classify(err))
	}
	return n, nil
}

// RescueToOutbox is Rescue for a deployment whose workers are fed by a
// queue (JOBS_DISPATCH=sqs): the same statement, with the same effects on
// the jobs and the attempt log, also writes an outbox row for each job it
// returns to the queue, due when its backoff ends. Nothing else would send
// one: the message that fed the lost attempt was acknowledged, or comes back
// while the lease still looks held and is skipped. It returns how many jobs
// were retried and how many failed.
func (s *Store) RescueToOutbox(ctx context.Context, backoff time.Duration) (retried, failed int, err error) {
	retried, failed, err = s.rescue(ctx, rescueToOutboxSQL, backoff)
	if err == nil && retried > 0 {
		s.outbox.written()
	}
	return retried, failed, err
}

// rescueToOutboxSQL is Rescue's statement, plus the outbox rows.
var rescueToOutboxSQL = rescueCTEs + `,
	queued AS (
		INSERT INTO outbox (job_id, not_before)
		SELECT id, run_after FROM rescued WHERE status <> 'FAILED')
	SELECT status FROM rescued`
