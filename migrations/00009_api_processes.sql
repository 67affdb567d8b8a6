-- +goose Up
-- The registry of live API processes: each `jobsd serve` upserts its row
-- every few seconds and deletes it when it stops cleanly. The number of rows
-- seen recently is N, by which each process divides the per-user limits so
-- that they hold for the whole deployment without a write per request.
CREATE TABLE api_processes (
    id           text        PRIMARY KEY,
    host         text        NOT NULL,
    pid          integer     NOT NULL,
    started_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE api_processes;
