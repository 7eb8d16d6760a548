-- +goose Up
-- Orders waiting for a free driver (every driver at capacity), first come, first served. The
-- payment.authorized that put an order here is kept as the cause of its later delivery.assigned.
CREATE TABLE waiting_orders (
    order_id       text        PRIMARY KEY,
    cause_event_id uuid        NOT NULL,
    correlation_id text        NOT NULL,
    waiting_since  timestamptz NOT NULL
);
CREATE INDEX waiting_orders_fifo ON waiting_orders (waiting_since, order_id);

-- +goose Down
DROP TABLE waiting_orders;
