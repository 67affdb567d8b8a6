package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"
)

// DueDelivery is a claimed delivery with what sending it needs.
type DueDelivery struct {
	WebhookDelivery
	UserID string `db:"user_id"`
	URL    string `db:"url"`
	// Secret and PreviousSecret are sealed (webhook.Sealer); PreviousSecret
	// is set while a rotation's grace period lasts.
	Secret         []byte `db:"secret"`
	PreviousSecret []byte `db:"previous_secret"`
}

// ClaimDeliveries claims up to n due deliveries, at most perEndpoint of
// one endpoint, none of the endpoints in busy (those with attempts under
// way in this process): each gets its attempt counted and its next
// attempt moved lease ahead, in one committed statement, so that a sender
// that dies leaves it due again after lease (at least once). SKIP LOCKED
// lets many API processes claim at once.
//
// The endpoints with pending deliveries are found by a skip scan of the
// pending index (one probe per such endpoint, one in all when nothing is
// pending, however many endpoints exist); each one's due deliveries are
// read by its own index range (the LATERALs), so a backlog at one endpoint
// never hides another's events; and the endpoints are served oldest due
// delivery first (found without locking: only the rows claimed are
// locked), so none waits behind others for ever.
func (s *Store) ClaimDeliveries(ctx context.Context, n, perEndpoint int, busy []uuid.UUID, lease time.Duration) ([]DueDelivery, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var out []DueDelivery
	err := s.db.SelectContext(ctx, &out, `
		WITH RECURSIVE pending(id) AS (
			(SELECT endpoint_id FROM webhook_deliveries WHERE status = 'PENDING' ORDER BY endpoint_id LIMIT 1)
			UNION ALL
			SELECT (SELECT d.endpoint_id FROM webhook_deliveries d
				WHERE d.status = 'PENDING' AND d.endpoint_id > p.id ORDER BY d.endpoint_id LIMIT 1)
			FROM pending p WHERE p.id IS NOT NULL),
		due AS MATERIALIZED (
			SELECT p.id, f.first_due FROM pending p CROSS JOIN LATERAL (
				SELECT d.next_attempt_at AS first_due FROM webhook_deliveries d
				WHERE d.endpoint_id = p.id AND d.status = 'PENDING' AND d.next_attempt_at <= now()
				ORDER BY d.next_attempt_at LIMIT 1) f
			WHERE p.id IS NOT NULL AND p.id <> ALL($3::uuid[])
			ORDER BY f.first_due LIMIT $1),
		picked AS (
			SELECT p.id FROM due CROSS JOIN LATERAL (
				SELECT d.id FROM webhook_deliveries d
				WHERE d.endpoint_id = due.id AND d.status = 'PENDING' AND d.next_attempt_at <= now()
				ORDER BY d.next_attempt_at LIMIT $2
				FOR UPDATE SKIP LOCKED) p
			LIMIT $1),
		d AS (UPDATE webhook_deliveries d SET attempts = d.attempts + 1,
				next_attempt_at = now() + make_interval(secs => $4)
			WHERE d.id IN (SELECT id FROM picked)
			RETURNING d.*)
		SELECT `+deliveryColumns+`, e.user_id, e.url, e.secret,
			CASE WHEN e.previous_until > now() THEN e.previous_secret END AS previous_secret
		FROM d JOIN webhook_endpoints e ON e.id = d.endpoint_id`,
		n, perEndpoint, pq.Array(uuidStrings(busy)), lease.Seconds())
	if err != nil {
		return nil, fmt.Errorf("claim deliveries: %w", classify(err))
	}
	for i := range out {
		out[i].utc()
	}
	return out, nil
}

// AttemptResult is how one attempt of a delivery went.
type AttemptResult struct {
	ID         uuid.UUID
	At         time.Time // when the attempt started
	Delivered  bool      // a 2xx
	StatusCode int       // 0: no answer
	Latency    time.Duration
	Error      string
	// Retry, when above 0, is the wait before the next attempt; 0 ends a
	// failed delivery as FAILED (its retries have run out).
	Retry time.Duration
	// Gone: the endpoint answered 410: the delivery ends FAILED and the
	// endpoint is disabled.
	Gone bool
}

// DisablePolicy is when a failing endpoint is disabled: after at least
// MinFailures consecutive failed attempts spanning at least After.
type DisablePolicy struct {
	MinFailures int
	After       time.Duration
}

// RecordAttempt writes an attempt's result on its delivery and its
// endpoint's health, in one statement. An endpoint that answered 410, or
// whose failures have run past p, is disabled with its reason, and its
// pending job events end as FAILED. It reports whether the endpoint was
// disabled by this attempt.
func (s *Store) RecordAttempt(ctx context.Context, r AttemptResult, p DisablePolicy) (disabled bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var code any
	if r.StatusCode > 0 {
		code = r.StatusCode
	}
	var errText any
	if r.Error != "" {
		errText = r.Error
	}
	var rows []bool
	err = s.db.SelectContext(ctx, &rows, `
		WITH d AS (UPDATE webhook_deliveries SET
			status = CASE WHEN $2::boolean THEN 'DELIVERED' WHEN $3::float8 <= 0 OR $8::boolean THEN 'FAILED' ELSE 'PENDING' END,
			next_attempt_at = CASE WHEN $2 OR $3 <= 0 OR $8 THEN NULL ELSE now() + make_interval(secs => $3) END,
			ended_at = CASE WHEN $2 OR $3 <= 0 OR $8 THEN now() END,
			last_attempt_at = $4::timestamptz, last_status_code = $5::integer, last_latency_ms = $6::integer, last_error = $7::text
			WHERE id = $1 AND status = 'PENDING'
			RETURNING endpoint_id),
		e AS (UPDATE webhook_endpoints e SET
			consecutive_failures = CASE WHEN $2 THEN 0 ELSE e.consecutive_failures + 1 END,
			failing_since = CASE WHEN $2 THEN NULL ELSE COALESCE(e.failing_since, $4) END,
			last_success_at = CASE WHEN $2 THEN now() ELSE e.last_success_at END,
			last_failure_at = CASE WHEN $2 THEN e.last_failure_at ELSE now() END,
			enabled = e.enabled AND NOT x.disable,
			disabled_reason = CASE WHEN e.enabled AND x.disable THEN x.reason ELSE e.disabled_reason END,
			updated_at = CASE WHEN e.enabled AND x.disable THEN now() ELSE e.updated_at END
			FROM (SELECT CASE
					WHEN $8 THEN 'Disabled: the endpoint answered 410 Gone'
					WHEN NOT $2 AND w.consecutive_failures + 1 >= $9 AND COALESCE(w.failing_since, $4) <= now() - make_interval(secs => $10::float8)
						THEN format('Disabled after %s consecutive failed attempts since %s (last: %s)',
							w.consecutive_failures + 1, to_char(COALESCE(w.failing_since, $4) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
							COALESCE('HTTP ' || $5::text, $7, 'no answer'))
					END AS reason, w.id
				FROM webhook_endpoints w WHERE w.id = (SELECT endpoint_id FROM d)) r
			CROSS JOIN LATERAL (SELECT r.reason IS NOT NULL AS disable, r.reason) x
			WHERE e.id = r.id
			RETURNING e.id, e.enabled, x.disable AS x_disable),
		f AS (`+failPendingSQL(`SELECT id FROM e WHERE x_disable`, `'Endpoint disabled'`)+`)
		SELECT x_disable FROM e`,
		r.ID, r.Delivered, r.Retry.Seconds(), r.At, code, r.Latency.Milliseconds(), errText,
		r.Gone, p.MinFailures, p.After.Seconds())
	if err != nil {
		return false, fmt.Errorf("record delivery attempt: %w", classify(err))
	}
	return len(rows) == 1 && rows[0], nil
}

// PruneDeliveries deletes deliveries that ended before cutoff, at most
// about limit, and returns how many.
//
// Job events are found by walking the primary key up to the cutoff: their
// ids (EventID, version 8) begin with the job's end, which is before the
// delivery's. The ids that do not say when (version 4: test events, job
// events written before migration 00017) are found by their own partial
// index on ended_at (00018). Neither costs an index entry per job event.
func (s *Store) PruneDeliveries(ctx context.Context, cutoff time.Time, limit int) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	res, err := s.db.ExecContext(ctx, `DELETE FROM webhook_deliveries WHERE id = ANY(ARRAY(
		(SELECT id FROM webhook_deliveries WHERE id < $3 AND ended_at < $1 ORDER BY id LIMIT $2)
		UNION ALL
		(SELECT id FROM webhook_deliveries WHERE ended_at < $1 AND (get_byte(uuid_send(id), 6) >> 4) <> 8
			ORDER BY ended_at LIMIT $2)))`, cutoff, limit, timeOrderedBound(cutoff))
	if err != nil {
		return 0, fmt.Errorf("prune deliveries: %w", classify(err))
	}
	return res.RowsAffected()
}

// timeOrderedBound is the least UUID whose first 48 bits (a version 7 or
// 8 UUID's time in milliseconds) are t or later: every EventID of a job
// that ended before t is below it.
func timeOrderedBound(t time.Time) uuid.UUID {
	var id uuid.UUID
	ms := uint64(t.UnixMilli())
	for i := range 6 {
		id[i] = byte(ms >> (40 - 8*i))
	}
	return id
}

// DeliveryBacklog is what waits to be sent.
type DeliveryBacklog struct {
	// Due is the deliveries due now (retries, test events, replays, events
	// handed to the retry path): events, one per endpoint.
	Due int64
	// OutboxJobs is the ended jobs in the outbox not yet expanded: each
	// becomes one event per endpoint of its owner that takes it, which may
	// be none (the outbox holds every ended job once any endpoint exists).
	OutboxJobs int64
	// Oldest is how long the oldest of either has waited (0 when none).
	Oldest time.Duration
}

// DeliveryBacklog reads what waits to be sent.
func (s *Store) DeliveryBacklog(ctx context.Context) (DeliveryBacklog, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var row struct {
		Due  int64   `db:"due"`
		Jobs int64   `db:"jobs"`
		Age  float64 `db:"age"`
	}
	err := s.db.GetContext(ctx, &row, `
		WITH d AS (SELECT count(*) AS n, min(next_attempt_at) AS oldest
			FROM webhook_deliveries WHERE status = 'PENDING' AND next_attempt_at <= now()),
		o AS (SELECT COALESCE(sum(cardinality(job_ids)), 0) AS n, min(occurred_at) AS oldest FROM webhook_outbox)
		SELECT d.n AS due, o.n AS jobs,
			COALESCE(extract(epoch FROM now() - LEAST(d.oldest, o.oldest)), 0)::float8 AS age
		FROM d, o`)
	if err != nil {
		return DeliveryBacklog{}, fmt.Errorf("delivery backlog: %w", classify(err))
	}
	return DeliveryBacklog{Due: row.Due, OutboxJobs: row.Jobs, Oldest: time.Duration(row.Age * float64(time.Second))}, nil
}
