-- +goose Up
CREATE TABLE orders (
    order_id     uuid          PRIMARY KEY,
    customer_id  text          NOT NULL,
    currency     char(3)       NOT NULL,
    total_amount numeric(14,2) NOT NULL CHECK (total_amount > 0),
    status       text          NOT NULL DEFAULT 'CREATED',
    created_at   timestamptz   NOT NULL
);
CREATE INDEX orders_customer ON orders (customer_id, created_at DESC);

CREATE TABLE order_items (
    order_id   uuid          NOT NULL REFERENCES orders (order_id),
    line_no    int           NOT NULL,
    item_id    text          NOT NULL,
    quantity   int           NOT NULL CHECK (quantity > 0),
    unit_price numeric(14,2) NOT NULL CHECK (unit_price > 0),
    PRIMARY KEY (order_id, line_no)
);

-- Idempotency-Key → the order it created, with a hash of the request it came with.
CREATE TABLE idempotency_keys (
    idem_key     text        PRIMARY KEY,
    request_hash bytea       NOT NULL,
    -- Deferred: the key row is written first (it serialises concurrent requests), the order after.
    order_id     uuid        NOT NULL REFERENCES orders (order_id) DEFERRABLE INITIALLY DEFERRED,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE idempotency_keys;
DROP TABLE order_items;
DROP TABLE orders;
