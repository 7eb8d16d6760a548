-- +goose Up
-- A cancellation asked for (POST /api/orders/{id}/cancel, or the deadline sweeper): set once, when
-- order.cancelled is written. Whether it took effect is the status (CANCELLED) set by the tracker.
ALTER TABLE orders ADD COLUMN cancel_reason text;
ALTER TABLE orders ADD COLUMN cancel_comment text;
ALTER TABLE orders ADD COLUMN cancel_requested_at timestamptz;
-- The deadline sweeper's scan: orders still in flight, oldest first. Only those are in the index.
CREATE INDEX orders_in_flight ON orders (created_at)
    WHERE status IN ('CREATED', 'INVENTORY_RESERVED', 'PAYMENT_AUTHORIZED') AND cancel_requested_at IS NULL;

-- +goose Down
DROP INDEX orders_in_flight;
ALTER TABLE orders DROP COLUMN cancel_requested_at;
ALTER TABLE orders DROP COLUMN cancel_comment;
ALTER TABLE orders DROP COLUMN cancel_reason;
