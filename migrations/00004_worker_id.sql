-- +goose Up
-- The worker process holding a job's current (or last) attempt: claims are
-- committed before any handler runs, so a PROCESSING row always names the
-- worker that took it. Adding a nullable column without a default rewrites
-- nothing, so this migration is instant on a table of any size.
ALTER TABLE jobs ADD COLUMN worker_id text;

-- +goose Down
ALTER TABLE jobs DROP COLUMN worker_id;
