-- +goose Up
-- Signed completion webhooks (docs/webhooks.md). webhook_endpoints holds
-- each user's endpoints; webhook_deliveries is the outbox of events and the
-- record of their attempts. The worker's outcome statement (and a cancel,
-- and a rescue that fails a job) inserts one delivery per matching enabled
-- endpoint in the same statement as the job's end, so an event is never
-- lost between the outcome and the send; the API's delivery loop sends
-- them.
--
-- 00017 replaced that per-event insert by one webhook_outbox row per
-- statement, expanded into events by the delivery loop, and dropped the
-- foreign key below; webhook_deliveries now records attempted events.
CREATE TABLE webhook_endpoints (
    id                   uuid        PRIMARY KEY,
    user_id              text        NOT NULL,
    url                  text        NOT NULL,
    event_types          text[]      NOT NULL,
    enabled              boolean     NOT NULL DEFAULT true,
    disabled_reason      text,
    -- The signing secret's key, sealed (AES-GCM under JOBS_WEBHOOK_KEY when
    -- set; webhook.Sealer), never returned after creation or rotation.
    secret               bytea       NOT NULL,
    -- After a rotation the previous key signs beside the new one until
    -- previous_until.
    previous_secret      bytea,
    previous_until       timestamptz,
    consecutive_failures integer     NOT NULL DEFAULT 0, -- failed attempts since the last success
    failing_since        timestamptz,                     -- the first failure of that run
    last_success_at      timestamptz,
    last_failure_at      timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
-- A user's endpoints, and the outcome statement's lookup of the enabled
-- ones of the users whose jobs end.
CREATE INDEX webhook_endpoints_user_idx ON webhook_endpoints (user_id, created_at);

CREATE TABLE webhook_deliveries (
    id               uuid        PRIMARY KEY DEFAULT gen_random_uuid(), -- the webhook-id header
    seq              bigint      GENERATED ALWAYS AS IDENTITY,           -- listing order and cursor
    endpoint_id      uuid        NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_type       text        NOT NULL,                               -- job.completed, job.failed, webhook.test
    job_id           uuid,                                               -- null for a test event
    occurred_at      timestamptz NOT NULL DEFAULT now(),                 -- the body's "timestamp"
    status           text        NOT NULL DEFAULT 'PENDING',             -- PENDING, DELIVERED, FAILED
    attempts         integer     NOT NULL DEFAULT 0,
    -- When the next attempt is due while PENDING; a claim moves it past the
    -- attempt's deadline, so an attempt whose sender died is made again.
    next_attempt_at  timestamptz DEFAULT now(),
    last_attempt_at  timestamptz,
    last_status_code integer,
    last_latency_ms  integer,
    last_error       text,
    ended_at         timestamptz
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (endpoint_id, next_attempt_at) WHERE status = 'PENDING';
CREATE INDEX webhook_deliveries_endpoint_idx ON webhook_deliveries (endpoint_id, seq);
CREATE INDEX webhook_deliveries_ended_idx ON webhook_deliveries (ended_at) WHERE ended_at IS NOT NULL;

-- One webhook_deliveries notification per statement that queued any: the
-- delivery loops' cue to claim (they also look every second). A statement
-- that queued none (an outcome batch of users without endpoints) sends
-- nothing.
-- +goose StatementBegin
CREATE FUNCTION webhook_deliveries_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows) THEN
        PERFORM pg_notify('webhook_deliveries', '');
    END IF;
    RETURN NULL;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER webhook_deliveries_queued AFTER INSERT ON webhook_deliveries
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_deliveries_notify();

-- +goose Down
DROP TABLE webhook_deliveries;
DROP FUNCTION webhook_deliveries_notify();
DROP TABLE webhook_endpoints;
