-- +goose Up
-- The W3C trace context the event was written in (NULL when tracing is off); the relay publishes
-- the event as its child, so one order's saga is one trace.
ALTER TABLE outbox ADD COLUMN traceparent text, ADD COLUMN tracestate text;

-- +goose Down
ALTER TABLE outbox DROP COLUMN traceparent, DROP COLUMN tracestate;
