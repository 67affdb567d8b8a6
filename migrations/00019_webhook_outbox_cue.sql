-- +goose Up
-- The webhook outbox's cue and its ids, cheaper for the statements that end
-- jobs. The cue (webhook_outbox_written, 00017) was a statement-level
-- trigger with a transition table (REFERENCING NEW TABLE) whose function
-- asked that table whether a row had been written, so that a statement
-- writing none notified nothing; and the ids array was stored with
-- EXTENDED storage, so that each row (a statement's 100-500 ids, 1.6-8 KB)
-- was first run through compression, which random UUIDs never pass.
--
-- In the worker's burn-down (300k jobs, one endpoint per user, nothing
-- sending, non-durable server, pg_stat_statements over each run, 4 repeats
-- each, the outcome statement's total execution time against jobsd x1's
-- in the same run): +12-13% with 00017's cue and storage; +4% with the
-- cue disabled and EXTERNAL storage; +0.4% with the row-level cue below
-- and EXTERNAL storage (bench/README.md, "The webhook outbox's cue").
--
-- A statement writes at most one outbox row, so a row-level trigger fires
-- exactly when one was written, and needs no transition table; EXTERNAL
-- stores the ids out of line without trying to compress them.
-- +goose StatementBegin
CREATE FUNCTION webhook_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('webhook_deliveries', '');
    RETURN NULL;
END;
$$;
-- +goose StatementEnd
DROP TRIGGER webhook_outbox_written ON webhook_outbox;
CREATE TRIGGER webhook_outbox_written AFTER INSERT ON webhook_outbox
    FOR EACH ROW EXECUTE FUNCTION webhook_outbox_notify();
ALTER TABLE webhook_outbox ALTER COLUMN job_ids SET STORAGE EXTERNAL;

-- +goose Down
ALTER TABLE webhook_outbox ALTER COLUMN job_ids SET STORAGE EXTENDED;
DROP TRIGGER webhook_outbox_written ON webhook_outbox;
CREATE TRIGGER webhook_outbox_written AFTER INSERT ON webhook_outbox
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_deliveries_notify();
DROP FUNCTION webhook_outbox_notify();
