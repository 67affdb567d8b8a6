-- +goose Up
-- One jobs_changed notification per updating statement (ids comma-separated,
-- in chunks that fit a notification's 8000-byte payload) instead of one per
-- row: a worker that claims or completes hundreds of jobs in one statement
-- sends a handful of notifications, not hundreds. Updates that do not bump
-- version (lease heartbeats) notify nobody.
DROP TRIGGER jobs_changed ON jobs;
DROP FUNCTION jobs_notify_changed();

-- +goose StatementBegin
CREATE FUNCTION jobs_notify_changed() RETURNS trigger LANGUAGE plpgsql AS $$
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

-- +goose Down
DROP TRIGGER jobs_changed ON jobs;
DROP FUNCTION jobs_notify_changed();
-- +goose StatementBegin
CREATE FUNCTION jobs_notify_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('jobs_changed', NEW.id::text);
    RETURN NULL;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER jobs_changed AFTER UPDATE ON jobs
    FOR EACH ROW WHEN (OLD.version IS DISTINCT FROM NEW.version)
    EXECUTE FUNCTION jobs_notify_changed();
