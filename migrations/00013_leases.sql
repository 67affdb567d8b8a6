-- +goose Up
-- A lease per claim instead of per job. A claim now takes its jobs' rows
-- out of job_queue (which keeps only waiting work) and writes one row here
-- for the whole batch; the job rows carry the batch's lease as their fence
-- (jobs.lease_owner). Heartbeats extend one row per claim, an outcome
-- writes only the job row (and a retry's queue row), and the rescuer finds
-- expired claims here.
--
-- Why (bench/README.md, "The queue's storage"): a claim that updated each
-- queue row moved it from the claimable index to the lease index (a new row
-- version and an index entry per job), and the outcome deleted it again.
-- SQL-only, on the durable server, that design used 32 µs of PostgreSQL CPU
-- per job; leases per claim used 20.
--
-- Workers of the previous release must be stopped before this runs
-- (docs/operating.md, "Upgrading"); their attempts under way keep their
-- leases, each becoming a claim of one job.
LOCK TABLE job_queue IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE job_leases (
    lease      uuid        PRIMARY KEY, -- the fence in jobs.lease_owner
    worker_id  text        NOT NULL,
    expires_at timestamptz NOT NULL,
    -- The claim's jobs. One whose jobs row no longer carries this lease
    -- has ended (or was cancelled or rescued): the array is never rewritten.
    ids        uuid[]      NOT NULL
);
CREATE INDEX job_leases_expires_idx ON job_leases (expires_at);

INSERT INTO job_leases (lease, worker_id, expires_at, ids)
SELECT q.lease_owner, COALESCE(j.worker_id, ''), q.lease_expires_at, ARRAY[q.id]
FROM job_queue q JOIN jobs j ON j.id = q.id
WHERE q.lease_owner IS NOT NULL;
DELETE FROM job_queue WHERE lease_owner IS NOT NULL;

-- job_queue holds waiting rows only: its partial indexes (on lease_owner
-- IS NULL) go with the column, and come back whole.
ALTER TABLE job_queue DROP COLUMN lease_owner, DROP COLUMN lease_expires_at;
CREATE INDEX job_queue_claimable_idx ON job_queue (run_after, id);
CREATE INDEX job_queue_user_claimable_idx ON job_queue (user_id, run_after, id);
-- Rows are inserted and deleted, never updated: no room to keep per page.
ALTER TABLE job_queue RESET (fillfactor);

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION jobs_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_queue (id, user_id, run_after)
    SELECT id, user_id, run_after FROM new_rows WHERE status IN ('PENDING', 'PROCESSING');
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

-- +goose Down
LOCK TABLE job_queue IN SHARE ROW EXCLUSIVE MODE;
ALTER TABLE job_queue ADD COLUMN lease_owner uuid, ADD COLUMN lease_expires_at timestamptz,
    ADD CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL));
ALTER TABLE job_queue SET (fillfactor = 60);
DROP INDEX job_queue_claimable_idx;
DROP INDEX job_queue_user_claimable_idx;
CREATE INDEX job_queue_claimable_idx ON job_queue (run_after, id) WHERE lease_owner IS NULL;
CREATE INDEX job_queue_user_claimable_idx ON job_queue (user_id, run_after, id) WHERE lease_owner IS NULL;
CREATE INDEX job_queue_lease_idx ON job_queue (lease_expires_at) WHERE lease_owner IS NOT NULL;
-- Attempts under way keep their leases, per job.
INSERT INTO job_queue (id, user_id, run_after, lease_owner, lease_expires_at)
SELECT j.id, j.user_id, j.run_after, l.lease, l.expires_at
FROM job_leases l CROSS JOIN unnest(l.ids) AS u(id)
JOIN jobs j ON j.id = u.id AND j.lease_owner = l.lease AND j.status = 'PROCESSING'
ON CONFLICT (id) DO NOTHING;
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION jobs_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_queue (id, user_id, run_after, lease_owner, lease_expires_at)
    SELECT id, user_id, run_after, lease_owner,
        CASE WHEN lease_owner IS NOT NULL THEN COALESCE(lease_expires_at, now()) END
    FROM new_rows WHERE status IN ('PENDING', 'PROCESSING');
    RETURN NULL;
END;
$$;
-- +goose StatementEnd
DROP TABLE job_leases;
