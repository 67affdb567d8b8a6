-- +goose Up
-- The open waiters (long polls that wait, event streams) of every user, one
-- row each, written only when one opens and when it ends, so that the
-- per-user cap on them holds exactly for the whole deployment. A row belongs
-- to the API process holding the waiter: it counts only while that process
-- is live (seen in api_processes recently), and goes with the process's
-- entry (a clean stop deletes it, a dead one is forgotten after a day).
CREATE TABLE waiters (
    -- Chosen at random by the opening process, so that it can delete a row
    -- whose open failed after the commit (a connection lost then).
    id         bigint      PRIMARY KEY,
    user_id    text        NOT NULL,
    process_id text        NOT NULL REFERENCES api_processes (id) ON DELETE CASCADE,
    opened_at  timestamptz NOT NULL DEFAULT now()
);
-- Counting a user's waiters reads this index alone (with the process, to
-- join its liveness). The cascade from api_processes scans the table, which
-- holds only the waiters open right now.
CREATE INDEX waiters_user_idx ON waiters (user_id, process_id);

-- open_waiter inserts the waiter p_id of the user unless the user already has
-- cap waiters held by live processes, and returns true, or false at the cap.
-- It serialises the opens of one user on an advisory lock and counts after
-- the lock is granted: a function, because one plain statement (a CTE that
-- takes the lock) counts in the snapshot it took before waiting for the
-- lock, and two concurrent opens could both pass the cap. A PL/pgSQL
-- statement takes a fresh snapshot (READ COMMITTED), so the count sees
-- every open committed before the lock was granted. The lock is held until
-- the calling statement's transaction ends. The key pair (namespace
-- 0x6a6f6277, "jobw"; hash of the user) cannot meet the single-bigint keys
-- of the other advisory locks; two users whose names hash alike only wait
-- for each other. An advisory lock rather than a row lock on an upserted
-- per-user row: store.BenchmarkWaiter finds them equally fast within its
-- noise, and the lock writes nothing (no row version and WAL per open, no
-- rows of past users to clean up).
-- +goose StatementBegin
CREATE FUNCTION open_waiter(p_id bigint, p_user text, p_process text, p_cap integer, p_live_secs double precision)
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

-- +goose Down
DROP FUNCTION open_waiter(bigint, text, text, integer, double precision);
DROP TABLE waiters;
