-- +goose Up
-- Completions are counted per minute instead of logged per attempt. The
-- attempt log (job_attempts) keeps every attempt that did not complete its
-- job (retried, failed, lost, cancelled); a completed attempt is what the
-- job row already records (its worker, attempted_at, completed_at), and the
-- admin API reads it from there. What the log gave besides, the count of
-- completions per minute for the stats, is this table: one row per minute,
-- type and worker, added to by each outcome statement of that worker (so
-- two workers never wait on one row), pruned after two hours.
--
-- Why (bench/README.md, "The queue's storage"): the log row of a completion
-- (a heap insert and two index entries) was 2-2.6 µs of PostgreSQL CPU and
-- 170-280 bytes of WAL per job, for rows nothing reads but the stats.
CREATE TABLE job_completions (
    minute    timestamptz NOT NULL,
    type      text        NOT NULL,
    worker_id text        NOT NULL,
    n         bigint      NOT NULL,
    PRIMARY KEY (minute, type, worker_id)
);

-- +goose Down
-- The previous release reads completed attempts from the log: write the
-- entries of the jobs completed without one.
INSERT INTO job_attempts (job_id, attempt, type, worker_id, started_at, ended_at, outcome, final)
SELECT j.id, j.attempts, j.type, j.worker_id, j.attempted_at, j.completed_at, 'completed', true
FROM jobs j
WHERE j.status = 'COMPLETED' AND j.completed_at IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM job_attempts a WHERE a.job_id = j.id AND a.outcome = 'completed');
DROP TABLE job_completions;
