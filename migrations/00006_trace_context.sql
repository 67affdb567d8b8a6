-- +goose Up
-- The W3C trace context (traceparent) of the request that created a job,
-- kept only when that request was traced and sampled, so that each attempt's
-- span can link back to it. Claim returns it with the attempt: no extra read.
-- Nullable without a default, so adding it rewrites nothing.
ALTER TABLE jobs ADD COLUMN trace_context text;

-- +goose Down
ALTER TABLE jobs DROP COLUMN trace_context;
