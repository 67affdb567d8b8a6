-- +goose Up
-- What operators need: each attempt's story, who cancelled a job, requeue
-- links and the live workers. Every column added to jobs is nullable without
-- a default, so nothing is rewritten.

-- When the current (or last) attempt was claimed: the start of its entry in
-- the attempt log, which is written when the attempt ends.
ALTER TABLE jobs ADD COLUMN attempted_at timestamptz;
-- The sub of whoever cancelled the job (its owner or an admin); a cancelled
-- job is never requeued.
ALTER TABLE jobs ADD COLUMN cancelled_by text;
-- The FAILED job this one re-runs. Unique: a job is requeued at most once.
-- Only requeued jobs have an entry, and the column never changes, so the
-- index costs nothing to the updates of the worker's claims and outcomes.
ALTER TABLE jobs ADD COLUMN requeued_from uuid;
CREATE UNIQUE INDEX jobs_requeued_from_idx ON jobs (requeued_from) WHERE requeued_from IS NOT NULL;

-- One row per ended attempt (and per cancellation), written in the statement
-- that ends it. Append-only, without a foreign key (a check per insert on
-- the worker's hot path): retention deletes a job's rows with the job.
CREATE TABLE job_attempts (
    job_id     uuid        NOT NULL,
    attempt    integer     NOT NULL CHECK (attempt >= 0), -- 0: cancelled before any attempt
    type       text        NOT NULL,
    worker_id  text,
    started_at timestamptz,
    ended_at   timestamptz NOT NULL DEFAULT now(),
    outcome    text        NOT NULL CHECK (outcome IN ('completed', 'retried', 'failed', 'lost', 'cancelled')),
    -- This entry ended the job (COMPLETED or FAILED): what the stats count.
    final      boolean     NOT NULL,
    error      text
);
CREATE INDEX job_attempts_job_idx ON job_attempts (job_id);
-- Rows arrive in ended_at order, so a BRIN index (a few pages) finds the
-- last hour for the stats.
CREATE INDEX job_attempts_ended_idx ON job_attempts USING brin (ended_at);

-- The worker registry: each worker process upserts its row at every
-- heartbeat and deletes it when it stops cleanly.
CREATE TABLE workers (
    id           text        PRIMARY KEY,
    host         text        NOT NULL,
    pid          integer     NOT NULL,
    version      text        NOT NULL,
    concurrency  integer     NOT NULL,
    in_flight    integer     NOT NULL,
    started_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE workers;
DROP TABLE job_attempts;
DROP INDEX jobs_requeued_from_idx;
ALTER TABLE jobs DROP COLUMN requeued_from;
ALTER TABLE jobs DROP COLUMN cancelled_by;
ALTER TABLE jobs DROP COLUMN attempted_at;
