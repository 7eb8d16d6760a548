-- +goose Up
-- The trace context of the payment that started the delivery (NULL when tracing is off): the
-- events written later on a timer (ETA updates, the completion, a queued order's assignment) join
-- the order's trace instead of starting their own.
ALTER TABLE deliveries ADD COLUMN traceparent text, ADD COLUMN tracestate text;
ALTER TABLE waiting_orders ADD COLUMN traceparent text, ADD COLUMN tracestate text;

-- +goose Down
ALTER TABLE deliveries DROP COLUMN traceparent, DROP COLUMN tracestate;
ALTER TABLE waiting_orders DROP COLUMN traceparent, DROP COLUMN tracestate;
