-- +goose Up
-- The jobs table is both the API's resource and the worker's queue.
CREATE TABLE jobs (
    id                 uuid        PRIMARY KEY,
    user_id            text        NOT NULL,
    type               text        NOT NULL CHECK (type IN ('AI_PREVIEW', 'PARSE_DOCUMENT', 'GAP_DETECTION', 'RISK_ANALYSIS', 'REPORT_GENERATION')),
    status             text        NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED')),
    input              jsonb       NOT NULL,
    result             jsonb,
    error              text,
    attempts           integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts       integer     NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    created_at         timestamptz NOT NULL DEFAULT now(),
    started_at         timestamptz,
    completed_at       timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    -- When a PENDING (or retrying PROCESSING) job may next be claimed.
    run_after          timestamptz NOT NULL DEFAULT now(),
    -- The worker attempt holding the job, and until when; NULL when nobody does.
    lease_owner        uuid,
    lease_expires_at   timestamptz,
    -- Changes whenever the row does; an ETag and a fence for completions.
    version            bigint      NOT NULL DEFAULT 1,
    -- Idempotency-Key of the creating request, scoped to user and endpoint.
    idempotency_scope  text,
    idempotency_key    text,
    request_hash       bytea,
    CHECK ((idempotency_key IS NULL) = (idempotency_scope IS NULL)),
    CHECK ((status IN ('COMPLETED', 'FAILED')) = (completed_at IS NOT NULL)),
    CHECK (status <> 'COMPLETED' OR result IS NOT NULL),
    CHECK (status <> 'FAILED' OR error IS NOT NULL)
);

-- The owner's list, newest first; also serves the status filter's scan.
CREATE INDEX jobs_user_created_idx ON jobs (user_id, created_at DESC, id DESC);

-- The claim query: runnable jobs in order of run_after.
CREATE INDEX jobs_claimable_idx ON jobs (run_after, id)
    WHERE status IN ('PENDING', 'PROCESSING') AND lease_owner IS NULL;

-- The rescuer: leases that may have expired.
CREATE INDEX jobs_lease_idx ON jobs (lease_expires_at)
    WHERE lease_owner IS NOT NULL;

-- One job per Idempotency-Key: a constraint, so concurrent requests cannot both insert.
CREATE UNIQUE INDEX jobs_idempotency_idx ON jobs (user_id, idempotency_scope, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- +goose Down
DROP TABLE jobs;
