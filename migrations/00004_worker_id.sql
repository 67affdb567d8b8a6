-- +goose Up
-- The worker process holding a job's current (or last) attempt: claims are
-- committed before any handler runs, so a PROCESSING row always names the
-- worker that took it. Adding a nullable column without a default rewrites
-- nothing, so this migration is instant on a table of any size.
ALTER TABLE jobs ADD COLUMN worker_id text;

-- The size of a result as the worker wrote it, so that a list page can stop
-- before its byte bound without reading (or decompressing) the results it
-- leaves out: pg_column_size gives only the stored, compressed size. NULL for
-- jobs completed before this migration, which fall back to pg_column_size.
ALTER TABLE jobs ADD COLUMN result_bytes integer;

-- +goose Down
ALTER TABLE jobs DROP COLUMN result_bytes;
ALTER TABLE jobs DROP COLUMN worker_id;
