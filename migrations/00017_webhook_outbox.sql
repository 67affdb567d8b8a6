-- +goose Up
-- A lean webhook outbox (docs/webhooks.md, "Delivery"). Until now each
-- statement that ends jobs inserted one webhook_deliveries row per event
-- (a heap row, three index entries and a foreign-key check each): +13 µs of
-- PostgreSQL CPU and +600 B of WAL per job in the worker's burn-down with
-- one endpoint per user. Now such a statement, when any endpoint exists,
-- inserts ONE webhook_outbox row holding the ids of the jobs it ended
-- (COMPLETED or FAILED), and nothing when it ended none. The API's delivery
-- loop claims outbox rows under a lease (claimed_until), reads the jobs,
-- matches their owners' endpoints (enabled, taking the event type, created
-- no later than occurred_at), sends, and then, in one transaction, records
-- every attempt in webhook_deliveries (a success as DELIVERED at once, a
-- failure as PENDING for the retry path) and deletes the outbox row. A
-- sender that dies between the send and the record leaves the row to be
-- claimed again when its lease ends: the events are sent again, with the
-- same webhook-id (a name-based UUID of endpoint, job, event type and the
-- job's end; the delivery row's id, inserted ON CONFLICT DO NOTHING).
--
-- No foreign key and no index but the primary key: the worker's statement
-- pays one heap row and one index entry per statement, not per job.
CREATE TABLE webhook_outbox (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at   timestamptz NOT NULL DEFAULT now(), -- when the jobs ended: the events' "timestamp"
    job_ids       uuid[]      NOT NULL,
    -- Null until claimed; a claim holds the row until then, past the
    -- attempts' deadline, so a row whose sender died is claimed again.
    claimed_until timestamptz
);

-- The delivery loops' cue (LISTEN webhook_deliveries, the channel they
-- already listen on): one notification per statement that wrote a row.
-- webhook_deliveries_notify (00015) checks the transition table, so a
-- statement that ended no job notifies nothing.
CREATE TRIGGER webhook_outbox_written AFTER INSERT ON webhook_outbox
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_deliveries_notify();

-- webhook_deliveries is now written by the delivery loop, mostly rows that
-- are already DELIVERED or wait for a retry: only a row due now (a test
-- event, a replay, an event handed over to the retry path) is a cue, so
-- recording results does not wake every delivery loop for nothing.
-- +goose StatementBegin
CREATE FUNCTION webhook_deliveries_due_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows WHERE status = 'PENDING' AND next_attempt_at <= now()) THEN
        PERFORM pg_notify('webhook_deliveries', '');
    END IF;
    RETURN NULL;
END;
$$;
-- +goose StatementEnd
DROP TRIGGER webhook_deliveries_queued ON webhook_deliveries;
CREATE TRIGGER webhook_deliveries_queued AFTER INSERT ON webhook_deliveries
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_deliveries_due_notify();

-- No foreign key from a delivery to its endpoint: it cost a lookup of the
-- endpoint per inserted row (3-4 µs a job in the burn-down). Its two jobs
-- are done by the statements instead: DeleteWebhook deletes the endpoint's
-- deliveries in the same statement, and the writers of deliveries (the
-- delivery loop's record, a test event) lock the endpoints they write for
-- (FOR KEY SHARE, once per endpoint, not per row) and write nothing for an
-- endpoint that is gone, so no delivery outlives its endpoint.
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_endpoint_id_fkey;

-- Nothing is stranded by the upgrade: the PENDING deliveries already in
-- webhook_deliveries (events queued by the former statements, and their
-- retries) are claimed and sent by the retry path as before.

-- +goose Down
-- Events still in the outbox become PENDING deliveries, due now, for each
-- endpoint that takes them, so that the former delivery loop sends them.
INSERT INTO webhook_deliveries (endpoint_id, event_type, job_id, occurred_at)
SELECT e.id, t.type, j.id, o.occurred_at
FROM webhook_outbox o
CROSS JOIN LATERAL unnest(o.job_ids) AS u(job_id)
JOIN jobs j ON j.id = u.job_id AND j.status IN ('COMPLETED', 'FAILED')
CROSS JOIN LATERAL (SELECT CASE j.status WHEN 'COMPLETED' THEN 'job.completed' ELSE 'job.failed' END AS type) t
JOIN webhook_endpoints e ON e.user_id = j.user_id AND e.enabled AND t.type = ANY(e.event_types)
    AND e.created_at <= o.occurred_at;
DELETE FROM webhook_deliveries d
WHERE NOT EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.id = d.endpoint_id);
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_endpoint_id_fkey
    FOREIGN KEY (endpoint_id) REFERENCES webhook_endpoints (id) ON DELETE CASCADE;
DROP TRIGGER webhook_deliveries_queued ON webhook_deliveries;
CREATE TRIGGER webhook_deliveries_queued AFTER INSERT ON webhook_deliveries
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_deliveries_notify();
DROP FUNCTION webhook_deliveries_due_notify();
DROP TABLE webhook_outbox;
