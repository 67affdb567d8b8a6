package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/jobsd/jobsd/job"
)

// The webhook outbox (migration 00017): the statements that end jobs write
// one webhook_outbox row per statement, the ids of the jobs they ended; the
// delivery loop claims rows (ClaimOutbox), which expands each into its
// events, sends them, and records them all at once (RecordOutbox), which
// also deletes the row.

// EventID is the webhook-id of a job's event to an endpoint, derived from
// the endpoint, the job, the event type and the time the job ended, so that
// an event sent again after its sender died mid-way (the outbox row claimed
// again) carries the same id, and is recorded once (it is the delivery
// row's id). A job requeued by an operator and ended again ends at another
// time: its new event has a new id.
//
// It is a version 8 (custom) UUID laid out as a version 7: the job's end in
// milliseconds in the first 48 bits, then 74 bits of a SHA-256 of the rest.
// Ordered by time like the ids of jobs, the delivery rows' primary key grows
// at its right edge instead of taking each insert at a random page, as a
// name-based (version 5) UUID would.
func EventID(endpoint, jobID uuid.UUID, eventType string, ended time.Time) uuid.UUID {
	h := sha256.New()
	h.Write(endpoint[:])
	h.Write(jobID[:])
	h.Write([]byte(eventType))
	_ = binary.Write(h, binary.BigEndian, ended.UnixMicro())
	sum := h.Sum(nil)
	var id uuid.UUID
	ms := uint64(ended.UnixMilli())
	for i := range 6 {
		id[i] = byte(ms >> (40 - 8*i))
	}
	copy(id[6:], sum[:10])
	id[6] = 0x80 | id[6]&0x0f // version 8
	id[8] = 0x80 | id[8]&0x3f // RFC 9562 variant
	return id
}

// Target is an endpoint as sending to it needs it.
type Target struct {
	EndpointID uuid.UUID
	UserID     string
	URL        string
	// Secret and PreviousSecret are sealed (webhook.Sealer); PreviousSecret
	// is set while a rotation's grace period lasts.
	Secret         []byte
	PreviousSecret []byte
}

// OutboxEvent is one event of a claimed outbox row: a job that ended, for
// one endpoint of its owner that takes the event type.
type OutboxEvent struct {
	ID         uuid.UUID // the webhook-id (EventID)
	EventType  string
	OccurredAt time.Time // when the job ended: the body's "timestamp"
	Job        job.Job   // as it is now, for the body
	Target
}

// OutboxBatch is one claimed outbox row and its events (none when no
// endpoint takes any of its jobs; it is still to be recorded, to delete
// it).
type OutboxBatch struct {
	ID     int64
	Events []OutboxEvent
}

// ClaimOutbox claims up to n outbox rows, oldest first, that no sender
// holds (never claimed, or their claim's lease ran out: the sender died),
// holding them for lease, and expands them into their events. SKIP LOCKED
// lets many API processes claim at once.
//
// The events are matched now, not when the jobs ended: each job (still
// COMPLETED or FAILED; a job requeued since gives its event when it ends
// again) goes to every enabled endpoint of its owner that takes its event
// type (job.completed or job.failed, from its status) and was created no
// later than the job ended.
func (s *Store) ClaimOutbox(ctx context.Context, n int, lease time.Duration) ([]OutboxBatch, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var rows []struct {
		ID         int64          `db:"id"`
		OccurredAt time.Time      `db:"occurred_at"`
		JobIDs     pq.StringArray `db:"job_ids"`
	}
	err := s.db.SelectContext(ctx, &rows, `
		UPDATE webhook_outbox o SET claimed_until = now() + make_interval(secs => $2)
		WHERE o.id = ANY(ARRAY(SELECT id FROM webhook_outbox
			WHERE claimed_until IS NULL OR claimed_until < now()
			ORDER BY id LIMIT $1
			FOR UPDATE SKIP LOCKED))
		RETURNING o.id, o.occurred_at, o.job_ids`, n, lease.Seconds())
	if err != nil {
		return nil, fmt.Errorf("claim webhook outbox: %w", classify(err))
	}
	if len(rows) == 0 {
		return nil, nil
	}
	sort.Slice(rows, func(i, k int) bool { return rows[i].ID < rows[k].ID })
	out := make([]OutboxBatch, len(rows))
	var jobIDs []string
	var batchOf []int64
	var times []string
	occurred := make([]time.Time, len(rows))
	for i, r := range rows {
		out[i].ID = r.ID
		// One event per job when its owner has one endpoint (the common
		// case): OutboxEvent is large, and growing the slice by appends
		// copied it over and over.
		out[i].Events = make([]OutboxEvent, 0, len(r.JobIDs))
		occurred[i] = r.OccurredAt.UTC()
		times = append(times, occurred[i].Format(time.RFC3339Nano))
		for _, id := range r.JobIDs {
			jobIDs = append(jobIDs, id)
			batchOf = append(batchOf, int64(i+1))
		}
	}
	if err := s.expandOutbox(ctx, out, jobIDs, batchOf, times, occurred); err != nil {
		return nil, err
	}
	return out, nil
}

// expandOutbox fills each batch's events: $1 the jobs' ids, $2 the
// (1-based) batch of each, $3 each batch's occurred_at (occurred, as
// text). The events' endpoints are read once each, after (targets), not
// on every event's row: their URL and sealed secrets were most of a row's
// bytes to send and decode.
//
// Each job is read by its key, one lookup per id (the LATERAL, kept from
// being flattened by OFFSET 0): the statistics of jobs are usually those of
// a queue of PENDING jobs, under which the planner, joining freely, took
// the ended jobs for none and scanned jobs once per id (5 s and more for a
// 500-job row in the bench).
func (s *Store) expandOutbox(ctx context.Context, out []OutboxBatch, jobIDs []string, batchOf []int64, times []string, occurred []time.Time) error {
	rows, err := s.db.QueryContext(ctx, expandOutboxSQL,
		pq.Array(jobIDs), pq.Array(batchOf), pq.Array(times))
	if err != nil {
		return fmt.Errorf("expand webhook outbox: %w", classify(err))
	}
	defer rows.Close()
	for rows.Next() {
		var ev OutboxEvent
		var b int
		if err := scanJob(rows, &ev.Job, &b, &ev.EventType, &ev.EndpointID); err != nil {
			return fmt.Errorf("expand webhook outbox: %w", classify(err))
		}
		ev.OccurredAt = occurred[b-1]
		ended := ev.OccurredAt
		if ev.Job.CompletedAt != nil {
			ended = *ev.Job.CompletedAt
		}
		ev.ID = EventID(ev.EndpointID, ev.Job.ID, ev.EventType, ended)
		out[b-1].Events = append(out[b-1].Events, ev)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("expand webhook outbox: %w", classify(err))
	}
	return s.fillTargets(ctx, out)
}

// fillTargets reads the endpoints of the batches' events, once each, into
// the events' Targets. The events of an endpoint deleted since the
// expansion are dropped, as if it had been deleted before.
func (s *Store) fillTargets(ctx context.Context, out []OutboxBatch) error {
	var ids []string
	seen := map[uuid.UUID]bool{}
	for _, b := range out {
		for _, ev := range b.Events {
			if !seen[ev.EndpointID] {
				seen[ev.EndpointID] = true
				ids = append(ids, ev.EndpointID.String())
			}
		}
	}
	if len(ids) == 0 {
		return nil
	}
	var targets []struct {
		ID             uuid.UUID `db:"id"`
		UserID         string    `db:"user_id"`
		URL            string    `db:"url"`
		Secret         []byte    `db:"secret"`
		PreviousSecret []byte    `db:"previous_secret"`
	}
	if err := s.db.SelectContext(ctx, &targets, `SELECT id, user_id, url, secret,
			CASE WHEN previous_until > now() THEN previous_secret END AS previous_secret
		FROM webhook_endpoints WHERE id = ANY($1::uuid[])`, pq.Array(ids)); err != nil {
		return fmt.Errorf("expand webhook outbox: read endpoints: %w", classify(err))
	}
	byID := make(map[uuid.UUID]Target, len(targets))
	for _, t := range targets {
		byID[t.ID] = Target{EndpointID: t.ID, UserID: t.UserID, URL: t.URL, Secret: t.Secret, PreviousSecret: t.PreviousSecret}
	}
	for i := range out {
		kept := out[i].Events[:0]
		for _, ev := range out[i].Events {
			if t, ok := byID[ev.EndpointID]; ok {
				ev.Target = t
				kept = append(kept, ev)
			}
		}
		out[i].Events = kept
	}
	return nil
}

// expandOutboxSQL is expandOutbox's statement.
var expandOutboxSQL = `
		SELECT ` + qualified("j", jobColumns) + `, x.b, t.type, e.id
		FROM unnest($1::uuid[], $2::int[]) AS x(job_id, b)
		CROSS JOIN LATERAL (SELECT ($3::timestamptz[])[x.b] AS at) o
		CROSS JOIN LATERAL (SELECT * FROM jobs WHERE jobs.id = x.job_id OFFSET 0) j
		CROSS JOIN LATERAL (SELECT CASE j.status WHEN 'COMPLETED' THEN 'job.completed' ELSE 'job.failed' END AS type) t
		JOIN webhook_endpoints e ON e.user_id = j.user_id AND e.enabled AND t.type = ANY(e.event_types)
			AND e.created_at <= o.at
		WHERE j.status IN ('COMPLETED', 'FAILED')`

// qualified is a column list with each column qualified by table.
func qualified(table, columns string) string {
	cols := strings.Split(columns, ",")
	for i, c := range cols {
		cols[i] = table + "." + strings.TrimSpace(c)
	}
	return strings.Join(cols, ", ")
}

// EventRecord is what became of one event of an outbox row.
type EventRecord struct {
	Event *OutboxEvent
	// Attempted is false for an event that was not sent (its endpoint had
	// no free slot in time): it is handed to the retry path, due at once,
	// without an attempt counted.
	Attempted bool
	// Result is the attempt's, when Attempted (its ID is not used).
	Result AttemptResult
}

// RecordOutbox records what became of an outbox row's events, and deletes
// the row, in one transaction: each event becomes a webhook_deliveries row
// (its id the webhook-id; one already there, written by a sender that
// claimed the row before, is kept): DELIVERED for a success, PENDING with
// its next attempt for a failure to retry (or due at once for an event not
// attempted), FAILED for one that cannot be retried. Each endpoint's
// health is updated as RecordAttempt does, from the events this record
// wrote: an event another sender recorded first counted there, once, as
// its delivery row says one attempt (so a second record of the same row
// changes no health). It returns the endpoints this disabled.
func (s *Store) RecordOutbox(ctx context.Context, outboxID int64, recs []EventRecord, p DisablePolicy) (disabled []uuid.UUID, err error) {
	disabled, err = s.recordOutbox(ctx, outboxID, recs, p, insertEventsSQL)
	if isUniqueViolation(err) {
		// Another sender of the same row recorded some of its events
		// meanwhile: keep theirs.
		disabled, err = s.recordOutbox(ctx, outboxID, recs, p, insertEventsSQL+` ON CONFLICT (id) DO NOTHING`)
	}
	return disabled, err
}

func (s *Store) recordOutbox(ctx context.Context, outboxID int64, recs []EventRecord, p DisablePolicy, insert string) (disabled []uuid.UUID, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("record webhook events: %w", classify(err))
	}
	defer tx.Rollback()
	var written []uuid.UUID
	if len(recs) > 0 {
		if err := tx.SelectContext(ctx, &written, insert+` RETURNING id`, eventArgs(recs)...); err != nil {
			return nil, fmt.Errorf("record webhook events: %w", classify(err))
		}
	}
	for _, h := range endpointHealth(writtenOnly(recs, written)) {
		var gone []bool
		err := tx.SelectContext(ctx, &gone, endpointHealthSQL,
			h.endpoint, h.reset, h.fails, h.firstFail, h.gone, h.code, h.errText, p.MinFailures, p.After.Seconds())
		if err != nil {
			return nil, fmt.Errorf("record webhook endpoint health: %w", classify(err))
		}
		if len(gone) == 1 && gone[0] {
			disabled = append(disabled, h.endpoint)
		}
	}
	if eps := pendingEndpoints(recs); len(eps) > 0 {
		// An endpoint disabled meanwhile (by this record or another) sends
		// no more job events: the ones just left PENDING end FAILED.
		if _, err := tx.ExecContext(ctx, failPendingSQL(`SELECT id FROM webhook_endpoints WHERE id = ANY($1::uuid[]) AND NOT enabled`, `'Endpoint disabled'`),
			pq.Array(eps)); err != nil {
			return nil, fmt.Errorf("record webhook events: %w", classify(err))
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM webhook_outbox WHERE id = $1`, outboxID); err != nil {
		return nil, fmt.Errorf("delete webhook outbox row: %w", classify(err))
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("record webhook events: %w", classify(err))
	}
	return disabled, nil
}

// writtenOnly is the records whose events are among written.
func writtenOnly(recs []EventRecord, written []uuid.UUID) []EventRecord {
	if len(written) == len(recs) {
		return recs // every event is new: the usual case
	}
	ids := make(map[uuid.UUID]bool, len(written))
	for _, id := range written {
		ids[id] = true
	}
	var out []EventRecord
	for _, r := range recs {
		if ids[r.Event.ID] {
			out = append(out, r)
		}
	}
	return out
}

// isUniqueViolation reports whether err is PostgreSQL's unique_violation.
func isUniqueViolation(err error) bool {
	var pqErr *pq.Error
	return errors.As(err, &pqErr) && pqErr.Code == "23505"
}

// insertEventsSQL writes the events of an outbox row, one array per column
// (eventArgs), but those already recorded (by a sender that claimed the row
// before). It checks with an index probe rather than ON CONFLICT, whose
// speculative insertion cost a WAL record more per row (463 B of WAL per
// row against 416); two senders recording the same row at once (a claim
// that ran out while its sender still worked) meet a unique violation, and
// RecordOutbox writes again ON CONFLICT DO NOTHING. The endpoints are locked first (FOR KEY SHARE, what a
// foreign key would take per row, once each): an endpoint deleted before
// gets nothing, and DeleteWebhook waits for this transaction before it
// deletes the endpoint's deliveries.
const insertEventsSQL = `
	WITH ep AS (SELECT id FROM webhook_endpoints WHERE id = ANY($2::uuid[]) FOR KEY SHARE)
	INSERT INTO webhook_deliveries (id, endpoint_id, event_type, job_id, occurred_at, status, attempts,
		next_attempt_at, last_attempt_at, last_status_code, last_latency_ms, last_error, ended_at)
	SELECT r.id, r.endpoint_id, r.type, r.job_id, r.occurred_at::timestamptz, r.status, r.attempts,
		CASE WHEN r.status = 'PENDING' THEN now() + make_interval(secs => r.retry) END,
		NULLIF(r.at, '')::timestamptz, NULLIF(r.code, 0), CASE WHEN r.attempts > 0 THEN r.latency END, NULLIF(r.error, ''),
		CASE WHEN r.status <> 'PENDING' THEN now() END
	FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::text[], $6::text[], $7::int[],
		$8::float8[], $9::text[], $10::int[], $11::int[], $12::text[])
		AS r(id, endpoint_id, type, job_id, occurred_at, status, attempts, retry, at, code, latency, error)
	WHERE r.endpoint_id IN (SELECT id FROM ep)
		AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.id = r.id)`

// eventArgs are insertEventsSQL's arguments.
func eventArgs(recs []EventRecord) []any {
	n := len(recs)
	ids, eps, types, jobs, occurred, statuses, ats, errs := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	attempts, codes, latencies := make([]int64, n), make([]int64, n), make([]int64, n)
	retries := make([]float64, n)
	for i, r := range recs {
		ev := r.Event
		ids[i], eps[i], types[i], jobs[i] = ev.ID.String(), ev.EndpointID.String(), ev.EventType, ev.Job.ID.String()
		occurred[i] = ev.OccurredAt.UTC().Format(time.RFC3339Nano)
		statuses[i] = DeliveryPending
		if !r.Attempted {
			continue // due at once, retry 0
		}
		res := r.Result
		attempts[i], ats[i] = 1, res.At.UTC().Format(time.RFC3339Nano)
		codes[i], latencies[i], errs[i] = int64(res.StatusCode), res.Latency.Milliseconds(), res.Error
		switch {
		case res.Delivered:
			statuses[i] = DeliveryDelivered
		case res.Gone || res.Retry <= 0:
			statuses[i] = DeliveryFailed
		default:
			retries[i] = res.Retry.Seconds()
		}
	}
	return []any{pq.Array(ids), pq.Array(eps), pq.Array(types), pq.Array(jobs), pq.Array(occurred), pq.Array(statuses),
		pq.Array(attempts), pq.Array(retries), pq.Array(ats), pq.Array(codes), pq.Array(latencies), pq.Array(errs)}
}

// pendingEndpoints are the endpoints of the events that recs leave
// PENDING (not attempted, or to be retried).
func pendingEndpoints(recs []EventRecord) []string {
	seen := map[uuid.UUID]bool{}
	var out []string
	for _, r := range recs {
		pending := !r.Attempted || !r.Result.Delivered && !r.Result.Gone && r.Result.Retry > 0
		if ep := r.Event.EndpointID; pending && !seen[ep] {
			seen[ep] = true
			out = append(out, ep.String())
		}
	}
	return out
}

// health is what an outbox row's attempts say of one endpoint.
type health struct {
	endpoint  uuid.UUID
	reset     bool      // an attempt succeeded: the run of failures starts again
	fails     int       // failed attempts after the last success
	firstFail time.Time // the first of them (zero when none)
	gone      bool      // an answer 410
	code      any       // the last failure's status code, or nil
	errText   any       // the last failure's error, or nil
}

// endpointHealth sums up the attempts of recs per endpoint (taken in the
// order they started), in the order of the endpoints' ids.
func endpointHealth(recs []EventRecord) []health {
	var attempted []EventRecord
	for _, r := range recs {
		if r.Attempted {
			attempted = append(attempted, r)
		}
	}
	sort.SliceStable(attempted, func(i, k int) bool { return attempted[i].Result.At.Before(attempted[k].Result.At) })
	byEndpoint := map[uuid.UUID]*health{}
	var order []uuid.UUID
	for _, r := range attempted {
		h := byEndpoint[r.Event.EndpointID]
		if h == nil {
			h = &health{endpoint: r.Event.EndpointID}
			byEndpoint[r.Event.EndpointID] = h
			order = append(order, r.Event.EndpointID)
		}
		res := r.Result
		if res.Delivered {
			h.reset, h.fails, h.firstFail, h.code, h.errText = true, 0, time.Time{}, nil, nil
			continue
		}
		if h.fails == 0 {
			h.firstFail = res.At
		}
		h.fails++
		h.gone = h.gone || res.Gone
		h.code, h.errText = nil, nil
		if res.StatusCode > 0 {
			h.code = res.StatusCode
		}
		if res.Error != "" {
			h.errText = res.Error
		}
	}
	// In the order of their ids: two records that share endpoints lock
	// their rows in one order, so they wait for each other and cannot
	// deadlock (one would roll back, and its events be sent again when the
	// claim ran out).
	sort.Slice(order, func(i, k int) bool { return bytes.Compare(order[i][:], order[k][:]) < 0 })
	out := make([]health, len(order))
	for i, id := range order {
		out[i] = *byEndpoint[id]
		if out[i].fails == 0 {
			out[i].firstFail = time.Now()
		}
	}
	return out
}

// endpointHealthSQL applies one endpoint's health (health's fields, then
// the DisablePolicy's) as RecordAttempt's statement does for one attempt:
// the run of failures, and disabling the endpoint, with its reason, on a
// 410 or a run past the policy; a disabled endpoint's pending job events
// end FAILED. It returns whether this disabled the endpoint.
var endpointHealthSQL = `
	WITH e AS (UPDATE webhook_endpoints e SET
		consecutive_failures = k.n,
		failing_since = k.since,
		last_success_at = CASE WHEN $2::boolean THEN now() ELSE e.last_success_at END,
		last_failure_at = CASE WHEN $3::int > 0 THEN now() ELSE e.last_failure_at END,
		enabled = e.enabled AND NOT x.disable,
		disabled_reason = CASE WHEN e.enabled AND x.disable THEN x.reason ELSE e.disabled_reason END,
		updated_at = CASE WHEN e.enabled AND x.disable THEN now() ELSE e.updated_at END
		FROM webhook_endpoints w
		CROSS JOIN LATERAL (SELECT
			CASE WHEN $2 THEN 0 ELSE w.consecutive_failures END + $3 AS n,
			CASE WHEN $3 = 0 THEN NULL WHEN $2 THEN $4::timestamptz ELSE COALESCE(w.failing_since, $4::timestamptz) END AS since) k
		CROSS JOIN LATERAL (SELECT CASE
				WHEN $5::boolean THEN 'Disabled: the endpoint answered 410 Gone'
				WHEN $3 > 0 AND k.n >= $8 AND k.since <= now() - make_interval(secs => $9::float8)
					THEN format('Disabled after %s consecutive failed attempts since %s (last: %s)',
						k.n, to_char(k.since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
						COALESCE('HTTP ' || $6::int::text, $7::text, 'no answer'))
				END AS reason) r
		CROSS JOIN LATERAL (SELECT r.reason IS NOT NULL AS disable, r.reason) x
		WHERE w.id = $1::uuid AND e.id = w.id
		RETURNING e.id, x.disable AS x_disable),
	f AS (` + failPendingSQL(`SELECT id FROM e WHERE x_disable`, `'Endpoint disabled'`) + `)
	SELECT x_disable FROM e`
