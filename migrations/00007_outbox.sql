-- +goose Up
-- With JOBS_DISPATCH=sqs the API tells the queue about each new job through
-- this outbox: the row is written in the statement that creates the job, so
-- a job exists exactly when its message is owed. A sender (the API, and the
-- scheduled sweep of the Lambda worker) sends rows to SQS and deletes them;
-- a crash between the insert and the send leaves the row for the next one.
-- The rescuer writes rows too, for jobs it returns to the queue.
--
-- No foreign key: a row outlives nothing for long, and a message for a job
-- deleted meanwhile is acknowledged and skipped by the worker.
CREATE TABLE outbox (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id     uuid        NOT NULL,
    -- The message is sent with DelaySeconds until then (at most 900 s; a
    -- message that arrives early is sent again with what is left).
    not_before timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE outbox;
