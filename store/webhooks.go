package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"
)

// Webhooks (migrations 00015 and 00017, docs/webhooks.md): each user's
// endpoints; webhook_outbox, the ids of the jobs that ended, written by the
// statements that end jobs (webhookEventsCTE); and webhook_deliveries, the
// record of each event's attempts, written by the API's delivery loop (the
// delivery package), which expands outbox rows into events.

// webhookEventsCTE is the CTE (named webhook_events) that the statements
// ending jobs add: ONE webhook_outbox row holding the ids of the rows of
// source (a CTE with the job's id) that where keeps, the jobs this
// statement ended COMPLETED or FAILED; no row when there are none. It is
// written by the statement that ends the jobs, so the events commit with
// the outcome or not at all. Whose endpoints take them, and of which event
// type (the job's status), the delivery loop finds when it expands the row:
// the statement pays one row and one index entry, however many jobs and
// endpoints.
//
// The uncorrelated EXISTS is a one-time filter: while nobody has an
// endpoint, the insert is one probe of an empty table per statement, and
// source is never scanned for it.
func webhookEventsCTE(source, where string) string {
	return `webhook_events AS (
		INSERT INTO webhook_outbox (job_ids)
		SELECT array_agg(` + source + `.id) FROM ` + source + `
		WHERE ` + where + ` AND EXISTS (SELECT 1 FROM webhook_endpoints)
		HAVING count(*) > 0)`
}

// Sentinel errors of the webhook statements.
var (
	// ErrWebhookNotFound: no such endpoint (or delivery) in the scope;
	// another user's is not found either.
	ErrWebhookNotFound = errors.New("webhook not found")
	// ErrWebhookLimit: the user has MaxWebhooksPerUser endpoints already.
	ErrWebhookLimit = errors.New("too many webhook endpoints")
)

// MaxWebhooksPerUser bounds each user's endpoints.
const MaxWebhooksPerUser = 10

// The event types, and a delivery's statuses.
const (
	EventJobCompleted = "job.completed"
	EventJobFailed    = "job.failed"
	EventWebhookTest  = "webhook.test"

	DeliveryPending   = "PENDING"
	DeliveryDelivered = "DELIVERED"
	DeliveryFailed    = "FAILED"
)

// WebhookEndpoint is one endpoint as its owner (or an operator) sees it.
// Its secrets never leave the store but through ClaimDeliveries.
type WebhookEndpoint struct {
	ID                  uuid.UUID  `db:"id"`
	UserID              string     `db:"user_id"`
	URL                 string     `db:"url"`
	EventTypes          []string   `db:"-"`
	Enabled             bool       `db:"enabled"`
	DisabledReason      *string    `db:"disabled_reason"`
	ConsecutiveFailures int        `db:"consecutive_failures"`
	LastSuccessAt       *time.Time `db:"last_success_at"`
	LastFailureAt       *time.Time `db:"last_failure_at"`
	CreatedAt           time.Time  `db:"created_at"`
	UpdatedAt           time.Time  `db:"updated_at"`
}

// endpointRow is WebhookEndpoint as scanned.
type endpointRow struct {
	WebhookEndpoint
	EventTypesArr pq.StringArray `db:"event_types"`
}

const endpointColumns = `id, user_id, url, event_types, enabled, disabled_reason, consecutive_failures,
	last_success_at, last_failure_at, created_at, updated_at`

func (r endpointRow) endpoint() WebhookEndpoint {
	e := r.WebhookEndpoint
	e.EventTypes = []string(r.EventTypesArr)
	e.CreatedAt, e.UpdatedAt = e.CreatedAt.UTC(), e.UpdatedAt.UTC()
	e.LastSuccessAt, e.LastFailureAt = utcPtr(e.LastSuccessAt), utcPtr(e.LastFailureAt)
	return e
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// NewWebhook is what CreateWebhook stores.
type NewWebhook struct {
	UserID     string
	URL        string
	EventTypes []string
	Secret     []byte // sealed (webhook.Sealer)
}

// CreateWebhook registers an endpoint, or fails with ErrWebhookLimit when
// its user has MaxWebhooksPerUser already (counted under a per-user lock,
// so two creations at once cannot both pass).
func (s *Store) CreateWebhook(ctx context.Context, nw NewWebhook) (*WebhookEndpoint, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("create webhook: %w", err)
	}
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("create webhook: %w", classify(err))
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('webhooks:' || $1, 0))`, nw.UserID); err != nil {
		return nil, fmt.Errorf("create webhook: %w", classify(err))
	}
	var row endpointRow
	err = tx.GetContext(ctx, &row, `
		INSERT INTO webhook_endpoints (id, user_id, url, event_types, secret)
		SELECT $1, $2, $3, $4, $5
		WHERE (SELECT count(*) FROM webhook_endpoints WHERE user_id = $2) < $6
		RETURNING `+endpointColumns,
		id, nw.UserID, nw.URL, pq.StringArray(nw.EventTypes), nw.Secret, MaxWebhooksPerUser)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrWebhookLimit
	}
	if err != nil {
		return nil, fmt.Errorf("create webhook: %w", classify(err))
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("create webhook: %w", classify(err))
	}
	e := row.endpoint()
	return &e, nil
}

// ListWebhooks returns the scope's endpoints, oldest first: at most limit
// (all of a user's when limit is 0), after the endpoint after when set.
func (s *Store) ListWebhooks(ctx context.Context, sc Scope, limit int, after *uuid.UUID) ([]WebhookEndpoint, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if limit <= 0 {
		limit = MaxWebhooksPerUser
	}
	var rows []endpointRow
	err := s.db.SelectContext(ctx, &rows, `SELECT `+endpointColumns+` FROM webhook_endpoints
		WHERE ($1::text IS NULL OR user_id = $1) AND ($2::uuid IS NULL OR id > $2)
		ORDER BY id LIMIT $3`, sc.ownerArg(), after, limit)
	if err != nil {
		return nil, fmt.Errorf("list webhooks: %w", classify(err))
	}
	out := make([]WebhookEndpoint, len(rows))
	for i, r := range rows {
		out[i] = r.endpoint()
	}
	return out, nil
}

// GetWebhook returns one endpoint of the scope.
func (s *Store) GetWebhook(ctx context.Context, sc Scope, id uuid.UUID) (*WebhookEndpoint, error) {
	return s.oneEndpoint(ctx, "get webhook", `SELECT `+endpointColumns+` FROM webhook_endpoints
		WHERE id = $1 AND ($2::text IS NULL OR user_id = $2)`, id, sc.ownerArg())
}

// WebhookUpdate is what UpdateWebhook changes; nil fields stay.
type WebhookUpdate struct {
	URL        *string
	EventTypes []string
	Enabled    *bool
}

// UpdateWebhook changes an endpoint of the scope. Enabling it clears
// jobsd's reason for disabling it and its run of failures; disabling it
// ends its pending job events as FAILED.
func (s *Store) UpdateWebhook(ctx context.Context, sc Scope, id uuid.UUID, u WebhookUpdate) (*WebhookEndpoint, error) {
	var types any
	if u.EventTypes != nil {
		types = pq.StringArray(u.EventTypes)
	}
	return s.oneEndpoint(ctx, "update webhook", `
		WITH e AS (UPDATE webhook_endpoints SET
			url = COALESCE($3, url),
			event_types = COALESCE($4, event_types),
			enabled = COALESCE($5, enabled),
			disabled_reason = CASE WHEN $5 THEN NULL ELSE disabled_reason END,
			consecutive_failures = CASE WHEN $5 AND NOT enabled THEN 0 ELSE consecutive_failures END,
			failing_since = CASE WHEN $5 AND NOT enabled THEN NULL ELSE failing_since END,
			updated_at = now()
		WHERE id = $1 AND ($2::text IS NULL OR user_id = $2)
		RETURNING `+endpointColumns+`),
		f AS (`+failPendingSQL(`SELECT id FROM e WHERE NOT enabled`, `'Endpoint disabled'`)+`)
		SELECT * FROM e`, id, sc.ownerArg(), u.URL, types, u.Enabled)
}

// failPendingSQL ends the pending job events of the endpoints that
// endpoints selects as FAILED with reason.
func failPendingSQL(endpoints, reason string) string {
	return `UPDATE webhook_deliveries SET status = 'FAILED', next_attempt_at = NULL, ended_at = now(),
			last_error = ` + reason + `
		WHERE endpoint_id IN (` + endpoints + `) AND status = 'PENDING' AND event_type <> 'webhook.test'`
}

// DeleteWebhook deletes an endpoint of the scope and then its deliveries,
// in one transaction: webhook_deliveries has no foreign key to cascade
// (00017). The writers of deliveries lock the endpoint (FOR KEY SHARE), so
// the first statement waits for one under way, and the second, with a
// snapshot taken after it, sees its rows; a writer that comes later finds
// no endpoint and writes nothing.
func (s *Store) DeleteWebhook(ctx context.Context, sc Scope, id uuid.UUID) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("delete webhook: %w", classify(err))
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `DELETE FROM webhook_endpoints WHERE id = $1 AND ($2::text IS NULL OR user_id = $2)`, id, sc.ownerArg())
	if err != nil {
		return fmt.Errorf("delete webhook: %w", classify(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrWebhookNotFound
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM webhook_deliveries WHERE endpoint_id = $1`, id); err != nil {
		return fmt.Errorf("delete webhook's deliveries: %w", classify(err))
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("delete webhook: %w", classify(err))
	}
	return nil
}

// RotateWebhookSecret replaces an endpoint's secret with sealed; the one it
// replaces keeps signing beside it for grace.
func (s *Store) RotateWebhookSecret(ctx context.Context, sc Scope, id uuid.UUID, sealed []byte, grace time.Duration) (*WebhookEndpoint, error) {
	return s.oneEndpoint(ctx, "rotate webhook secret", `
		UPDATE webhook_endpoints SET previous_secret = secret, secret = $3,
			previous_until = now() + make_interval(secs => $4), updated_at = now()
		WHERE id = $1 AND ($2::text IS NULL OR user_id = $2)
		RETURNING `+endpointColumns, id, sc.ownerArg(), sealed, grace.Seconds())
}

func (s *Store) oneEndpoint(ctx context.Context, what, query string, args ...any) (*WebhookEndpoint, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var row endpointRow
	err := s.db.GetContext(ctx, &row, query, args...)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrWebhookNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, classify(err))
	}
	e := row.endpoint()
	return &e, nil
}

// WebhookDelivery is one event to one endpoint and its attempts so far.
type WebhookDelivery struct {
	ID             uuid.UUID  `db:"id"`
	Seq            int64      `db:"seq"`
	EndpointID     uuid.UUID  `db:"endpoint_id"`
	EventType      string     `db:"event_type"`
	JobID          *uuid.UUID `db:"job_id"`
	OccurredAt     time.Time  `db:"occurred_at"`
	Status         string     `db:"status"`
	Attempts       int        `db:"attempts"`
	NextAttemptAt  *time.Time `db:"next_attempt_at"`
	LastAttemptAt  *time.Time `db:"last_attempt_at"`
	LastStatusCode *int       `db:"last_status_code"`
	LastLatencyMs  *int       `db:"last_latency_ms"`
	LastError      *string    `db:"last_error"`
}

const deliveryColumns = `d.id, d.seq, d.endpoint_id, d.event_type, d.job_id, d.occurred_at, d.status, d.attempts,
	d.next_attempt_at, d.last_attempt_at, d.last_status_code, d.last_latency_ms, d.last_error`

func (d *WebhookDelivery) utc() {
	d.OccurredAt = d.OccurredAt.UTC()
	d.NextAttemptAt, d.LastAttemptAt = utcPtr(d.NextAttemptAt), utcPtr(d.LastAttemptAt)
}

// QueueTestDelivery queues a webhook.test event to an endpoint of the scope.
func (s *Store) QueueTestDelivery(ctx context.Context, sc Scope, endpointID uuid.UUID) (*WebhookDelivery, error) {
	return s.oneDelivery(ctx, "queue test delivery", `
		INSERT INTO webhook_deliveries AS d (endpoint_id, event_type)
		SELECT id, 'webhook.test' FROM webhook_endpoints WHERE id = $1 AND ($2::text IS NULL OR user_id = $2)
		FOR KEY SHARE
		RETURNING `+deliveryColumns, endpointID, sc.ownerArg())
}

// ReplayDelivery queues a delivery of an endpoint of the scope again, at
// once, with a fresh run of retries; its id (the webhook-id) stays.
func (s *Store) ReplayDelivery(ctx context.Context, sc Scope, endpointID, deliveryID uuid.UUID) (*WebhookDelivery, error) {
	return s.oneDelivery(ctx, "replay delivery", `
		UPDATE webhook_deliveries d SET status = 'PENDING', attempts = 0, next_attempt_at = now(), ended_at = NULL
		FROM webhook_endpoints e
		WHERE d.id = $3 AND d.endpoint_id = $1 AND e.id = d.endpoint_id AND ($2::text IS NULL OR e.user_id = $2)
		RETURNING `+deliveryColumns, endpointID, sc.ownerArg(), deliveryID)
}

// ListDeliveries returns an endpoint's deliveries, newest first, at most
// limit, older than the delivery numbered before when set (the cursor).
// The endpoint must be in the scope.
func (s *Store) ListDeliveries(ctx context.Context, sc Scope, endpointID uuid.UUID, limit int, before *int64) ([]WebhookDelivery, error) {
	if _, err := s.GetWebhook(ctx, sc, endpointID); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var out []WebhookDelivery
	err := s.db.SelectContext(ctx, &out, `SELECT `+deliveryColumns+` FROM webhook_deliveries d
		WHERE d.endpoint_id = $1 AND ($2::bigint IS NULL OR d.seq < $2)
		ORDER BY d.seq DESC LIMIT $3`, endpointID, before, limit)
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", classify(err))
	}
	for i := range out {
		out[i].utc()
	}
	return out, nil
}

func (s *Store) oneDelivery(ctx context.Context, what, query string, args ...any) (*WebhookDelivery, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var d WebhookDelivery
	err := s.db.GetContext(ctx, &d, query, args...)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrWebhookNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, classify(err))
	}
	d.utc()
	return &d, nil
}
