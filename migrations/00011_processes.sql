-- +goose Up
-- One registry of live processes instead of two tables of the same shape
-- (workers, 00005; api_processes, 00009): each `jobsd serve`, `jobsd worker`
-- and Lambda instance upserts its row at every heartbeat, deletes it when it
-- stops cleanly, and any heartbeat deletes the rows silent for a day.

-- Taken up front, so that a heartbeat of a process still running the
-- previous release waits for the migration instead of committing between the
-- copy and the drop. That release's statements take these locks in both
-- orders (an open waiter locks waiters, then api_processes; an unregister
-- the reverse, through its cascade), so either order can meet one of them
-- in a deadlock: PostgreSQL then aborts one of the two after a second, the
-- old statement (its caller logs it and retries at the next heartbeat) or
-- this migration (nothing is applied; `jobsd migrate up` runs it again).
LOCK TABLE waiters, api_processes, workers IN ACCESS EXCLUSIVE MODE;

CREATE TABLE processes (
    id           text        PRIMARY KEY,
    kind         text        NOT NULL CHECK (kind IN ('api', 'worker')), -- a Lambda instance is a worker
    host         text        NOT NULL,
    pid          integer     NOT NULL,
    version      text        NOT NULL,
    concurrency  integer     NOT NULL, -- 0 for an API process
    in_flight    integer     NOT NULL, -- 0 for an API process
    started_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL DEFAULT now()
);
-- No index beyond the key: the table holds one row per process (tens), and
-- every read of it counts or lists them all.

INSERT INTO processes (id, kind, host, pid, version, concurrency, in_flight, started_at, last_seen_at)
SELECT id, 'worker', host, pid, version, concurrency, in_flight, started_at, last_seen_at FROM workers;
-- API process ids are random UUIDs and worker ids never are, so the two
-- cannot meet; DO NOTHING only keeps the migration from failing if they did.
INSERT INTO processes (id, kind, host, pid, version, concurrency, in_flight, started_at, last_seen_at)
SELECT id, 'api', host, pid, 'unknown', 0, 0, started_at, last_seen_at FROM api_processes
ON CONFLICT (id) DO NOTHING;

-- A waiter belongs to the API process that holds it, as before: it counts
-- while that process is live and goes with its entry.
ALTER TABLE waiters DROP CONSTRAINT waiters_process_id_fkey;
ALTER TABLE waiters ADD CONSTRAINT waiters_process_id_fkey
    FOREIGN KEY (process_id) REFERENCES processes (id) ON DELETE CASCADE;

-- The same function as in 00010 (same signature, so callers of either
-- release use it), counting the waiters of live processes in processes.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION open_waiter(p_id bigint, p_user text, p_process text, p_cap integer, p_live_secs double precision)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1785684599, hashtext(p_user));
    INSERT INTO waiters (id, user_id, process_id)
    SELECT p_id, p_user, p_process
    WHERE (SELECT count(*) FROM waiters w JOIN processes p ON p.id = w.process_id
           WHERE w.user_id = p_user
             AND p.last_seen_at >= now() - make_interval(secs => p_live_secs)) < p_cap;
    RETURN FOUND;
END;
$$;
-- +goose StatementEnd

DROP TABLE workers;
DROP TABLE api_processes;

-- Processes of the previous release keep running during a rolling upgrade
-- and still name the old tables. These views stand in for them: simple views
-- are updatable (INSERT ... ON CONFLICT, UPDATE and DELETE go to processes),
-- and the column defaults fill in what the old statements do not write. So
-- an old process's heartbeats, its registration count, its admin listing and
-- its live-worker count read and write the one registry, and the new
-- processes count it. No code of this release reads them; a later migration
-- drops them once no deployment can still run a release before this one.
CREATE VIEW workers AS
SELECT id, kind, host, pid, version, concurrency, in_flight, started_at, last_seen_at
FROM processes WHERE kind = 'worker';
ALTER VIEW workers ALTER COLUMN kind SET DEFAULT 'worker';

CREATE VIEW api_processes AS
SELECT id, kind, host, pid, version, concurrency, in_flight, started_at, last_seen_at
FROM processes WHERE kind = 'api';
ALTER VIEW api_processes ALTER COLUMN kind SET DEFAULT 'api';
ALTER VIEW api_processes ALTER COLUMN version SET DEFAULT 'unknown';
ALTER VIEW api_processes ALTER COLUMN concurrency SET DEFAULT 0;
ALTER VIEW api_processes ALTER COLUMN in_flight SET DEFAULT 0;

-- +goose Down
-- The previous shape, with the rows of live processes copied back. Waiters
-- can only belong to API processes; any other row could not be re-pointed.
LOCK TABLE waiters, processes IN ACCESS EXCLUSIVE MODE;
DROP VIEW api_processes;
DROP VIEW workers;

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
INSERT INTO workers (id, host, pid, version, concurrency, in_flight, started_at, last_seen_at)
SELECT id, host, pid, version, concurrency, in_flight, started_at, last_seen_at FROM processes WHERE kind = 'worker';

CREATE TABLE api_processes (
    id           text        PRIMARY KEY,
    host         text        NOT NULL,
    pid          integer     NOT NULL,
    started_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO api_processes (id, host, pid, started_at, last_seen_at)
SELECT id, host, pid, started_at, last_seen_at FROM processes WHERE kind = 'api';

DELETE FROM waiters WHERE process_id NOT IN (SELECT id FROM api_processes);
ALTER TABLE waiters DROP CONSTRAINT waiters_process_id_fkey;
ALTER TABLE waiters ADD CONSTRAINT waiters_process_id_fkey
    FOREIGN KEY (process_id) REFERENCES api_processes (id) ON DELETE CASCADE;

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION open_waiter(p_id bigint, p_user text, p_process text, p_cap integer, p_live_secs double precision)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1785684599, hashtext(p_user));
    INSERT INTO waiters (id, user_id, process_id)
    SELECT p_id, p_user, p_process
    WHERE (SELECT count(*) FROM waiters w JOIN api_processes p ON p.id = w.process_id
           WHERE w.user_id = p_user
             AND p.last_seen_at >= now() - make_interval(secs => p_live_secs)) < p_cap;
    RETURN FOUND;
END;
$$;
-- +goose StatementEnd

DROP TABLE processes;
