-- +goose NO TRANSACTION
-- +goose Up
-- Pruning ended deliveries (store.PruneDeliveries) without an index entry
-- per event. webhook_deliveries_ended_idx (00015) took an entry for every
-- delivery that ended, every event the delivery loop records (most are
-- DELIVERED at once): one WAL record and about 60 B of WAL per event
-- (EXPLAIN (ANALYZE, WAL) of the record's insert of 500 events: 4.0 -> 3.0
-- WAL records and 420 -> 360 B per event), for a statement run once an
-- hour. A job event's id says when it ended (store.EventID: a version 8
-- UUID whose first 48 bits are the job's end in milliseconds), and a
-- delivery ends after its job did, so pruning walks the primary key up to
-- the cutoff instead. The ids that say nothing of time (version 4: test
-- events, and job events written before 00017) are few, and keep a small
-- partial index of their own, which a job event's insert only tests.
--
-- Built CONCURRENTLY so that migrating a live table blocks neither the
-- delivery loop's records nor the API's listings; an interrupted build
-- leaves an invalid index that the next run drops first (as 00008).
DROP INDEX CONCURRENTLY IF EXISTS webhook_deliveries_untimed_ended_idx;
CREATE INDEX CONCURRENTLY webhook_deliveries_untimed_ended_idx ON webhook_deliveries (ended_at)
    WHERE ended_at IS NOT NULL AND (get_byte(uuid_send(id), 6) >> 4) <> 8;
DROP INDEX CONCURRENTLY IF EXISTS webhook_deliveries_ended_idx;

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS webhook_deliveries_ended_idx;
CREATE INDEX CONCURRENTLY webhook_deliveries_ended_idx ON webhook_deliveries (ended_at) WHERE ended_at IS NOT NULL;
DROP INDEX CONCURRENTLY IF EXISTS webhook_deliveries_untimed_ended_idx;
