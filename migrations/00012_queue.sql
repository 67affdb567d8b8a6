-- +goose Up
-- The queue moves off the jobs table into job_queue, a narrow table that
-- holds only work to do: one row per PENDING or PROCESSING job, waiting
-- (lease_owner NULL) or held by an attempt (its lease), deleted in the
-- statement that ends the job. The jobs row keeps what clients see and the
-- attempt's fence (lease_owner, now unindexed).
--
-- Why (bench/README.md, "The queue's storage"): the queue's partial indexes
-- on jobs named status, lease_owner and lease_expires_at, so no update of a
-- job row could be HOT, and each claim and outcome added entries to every
-- index of the wide row (five B-tree leaf inserts and three LOCK records
-- per job in the WAL). With those columns unindexed on jobs and room left on
-- its pages (fillfactor 50), a claim and an outcome rewrite the job row in
-- place (HOT); the index work of the queue happens on rows of ~60 bytes that
-- never hold history, so the queue's indexes stay small however many
-- finished jobs the table keeps.
--
-- Workers of the previous release must be stopped before this runs: they
-- would claim from jobs without job_queue knowing (docs/operating.md, "Upgrading").
-- API processes of the previous release may keep running: their inserts are
-- enqueued by the jobs_enqueue trigger below.
LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE job_queue (
    id               uuid        PRIMARY KEY, -- the job's id
    user_id          text        NOT NULL,
    -- When a waiting row may next be claimed (a retry's backoff).
    run_after        timestamptz NOT NULL,
    -- The attempt holding the job, and until when; NULL while it waits.
    lease_owner      uuid,
    lease_expires_at timestamptz,
    CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL))
) WITH (fillfactor = 60); -- a claim's new row version fits on its page

-- The claim: waiting rows in queue order, and each user's in queue order
-- (fair claims, store/fair.go).
CREATE INDEX job_queue_claimable_idx ON job_queue (run_after, id) WHERE lease_owner IS NULL;
CREATE INDEX job_queue_user_claimable_idx ON job_queue (user_id, run_after, id) WHERE lease_owner IS NULL;
-- The rescuer and the user cap: held rows.
CREATE INDEX job_queue_lease_idx ON job_queue (lease_expires_at) WHERE lease_owner IS NOT NULL;

INSERT INTO job_queue (id, user_id, run_after, lease_owner, lease_expires_at)
SELECT id, user_id, run_after, lease_owner, CASE WHEN lease_owner IS NOT NULL THEN COALESCE(lease_expires_at, now()) END
FROM jobs WHERE status IN ('PENDING', 'PROCESSING');

-- Every job inserted unfinished is enqueued by the statement that inserts
-- it, whoever inserts it (the API's create and requeue, an API process of
-- the previous release during a rolling upgrade): one INSERT per statement.
-- +goose StatementBegin
CREATE FUNCTION jobs_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_queue (id, user_id, run_after, lease_owner, lease_expires_at)
    SELECT id, user_id, run_after, lease_owner,
        CASE WHEN lease_owner IS NOT NULL THEN COALESCE(lease_expires_at, now()) END
    FROM new_rows WHERE status IN ('PENDING', 'PROCESSING');
    RETURN NULL;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER jobs_enqueue AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_enqueue();

-- For API processes of the previous release during a rolling upgrade: their
-- cancel updates jobs alone and would leave the job's queue row behind, for
-- a claim to find. This release's cancel deletes the row itself, so the
-- trigger finds nothing then; it fires for cancels only (cancelled_by set),
-- never for the worker's outcomes. A later release drops it.
-- +goose StatementBegin
CREATE FUNCTION jobs_dequeue_cancelled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM job_queue WHERE id = NEW.id;
    RETURN NULL;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER jobs_dequeue_cancelled AFTER UPDATE ON jobs
    FOR EACH ROW WHEN (OLD.completed_at IS NULL AND NEW.completed_at IS NOT NULL AND NEW.cancelled_by IS NOT NULL)
    EXECUTE FUNCTION jobs_dequeue_cancelled();

-- jobs_changed without the old rows: every update of a job row now changes
-- what a client sees (heartbeats write job_queue only), so it notifies every
-- updated id. Its join of old and new rows to find changed versions is gone
-- with them; planned without statistics on the transition tables, that join
-- became a nested loop, and a claim of 1,500 jobs spent 143 ms in it (one
-- repeat of a 300k burn-down ran at 6.5k jobs/s instead of 30k).
DROP TRIGGER jobs_changed ON jobs;
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION jobs_notify_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    chunk text;
BEGIN
    FOR chunk IN
        SELECT string_agg(n.id::text, ',')
        FROM (SELECT id, (row_number() OVER () - 1) / 200 AS part FROM new_rows) n
        GROUP BY n.part
    LOOP
        PERFORM pg_notify('jobs_changed', chunk);
    END LOOP;
    RETURN NULL;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER jobs_changed AFTER UPDATE ON jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_notify_changed();

DROP INDEX jobs_claimable_idx;
DROP INDEX jobs_user_claimable_idx;
DROP INDEX jobs_lease_idx;
UPDATE jobs SET lease_expires_at = NULL WHERE lease_expires_at IS NOT NULL;
-- New pages keep half their room for the claim's and the outcome's row
-- versions; existing pages are not rewritten.
ALTER TABLE jobs SET (fillfactor = 50);

-- +goose Down
LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE;
ALTER TABLE jobs RESET (fillfactor);
UPDATE jobs j SET lease_expires_at = q.lease_expires_at, run_after = q.run_after
FROM job_queue q WHERE q.id = j.id;
CREATE INDEX jobs_claimable_idx ON jobs (run_after, id)
    WHERE status IN ('PENDING', 'PROCESSING') AND lease_owner IS NULL;
CREATE INDEX jobs_user_claimable_idx ON jobs (user_id, run_after, id)
    WHERE status IN ('PENDING', 'PROCESSING') AND lease_owner IS NULL;
CREATE INDEX jobs_lease_idx ON jobs (lease_expires_at)
    WHERE lease_owner IS NOT NULL;
DROP TRIGGER jobs_changed ON jobs;
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION jobs_notify_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    chunk text;
BEGIN
    FOR chunk IN
        SELECT string_agg(n.id::text, ',')
        FROM (
            SELECT n.id, (row_number() OVER () - 1) / 200 AS part
            FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE o.version IS DISTINCT FROM n.version
        ) n
        GROUP BY n.part
    LOOP
        PERFORM pg_notify('jobs_changed', chunk);
    END LOOP;
    RETURN NULL;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER jobs_changed AFTER UPDATE ON jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_notify_changed();
DROP TRIGGER jobs_dequeue_cancelled ON jobs;
DROP FUNCTION jobs_dequeue_cancelled();
DROP TRIGGER jobs_enqueue ON jobs;
DROP FUNCTION jobs_enqueue();
DROP TABLE job_queue;
