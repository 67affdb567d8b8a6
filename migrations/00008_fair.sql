-- +goose NO TRANSACTION
-- +goose Up
-- Fair claims: each user's runnable jobs in queue order, so that a claim can
-- take every user's oldest jobs in turn (store.Claim) instead of serving one
-- user's whole backlog before anybody else's next job.
--
-- Only rows waiting to be claimed are in it, and a claim's new row version
-- leaves it, so claims and outcomes add nothing here: only an insert, a
-- retry or a hand-back does. Built CONCURRENTLY so that migrating a live
-- table blocks neither inserts nor claims. A build that was interrupted
-- leaves an invalid index behind and goose does not record the migration,
-- so the next run drops that leftover first.
DROP INDEX CONCURRENTLY IF EXISTS jobs_user_claimable_idx;
CREATE INDEX CONCURRENTLY jobs_user_claimable_idx ON jobs (user_id, run_after, id)
    WHERE status IN ('PENDING', 'PROCESSING') AND lease_owner IS NULL;

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS jobs_user_claimable_idx;
