-- +goose Up
-- Workers wake on jobs_inserted: one notification per inserting statement,
-- not per row, so that bulk inserts do not serialise on the notify queue.
-- +goose StatementBegin
CREATE FUNCTION jobs_notify_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('jobs_inserted', '');
    RETURN NULL;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER jobs_inserted AFTER INSERT ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_notify_inserted();

-- Every change a client can see bumps version; jobs_changed carries the id,
-- for long polls and event streams.
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

-- +goose Down
DROP TRIGGER jobs_changed ON jobs;
DROP FUNCTION jobs_notify_changed();
DROP TRIGGER jobs_inserted ON jobs;
DROP FUNCTION jobs_notify_inserted();
