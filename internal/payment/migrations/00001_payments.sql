-- +goose Up
CREATE TABLE payments (
    payment_id      bigserial     PRIMARY KEY,
    order_id        text          NOT NULL,
    -- The eventId of the inventory.reserved that caused the charge.
    idempotency_key text          NOT NULL,
    customer_id     text          NOT NULL,
    amount          numeric(14,2) NOT NULL,
    currency        char(3)       NOT NULL,
    status          text          NOT NULL CHECK (status IN ('AUTHORIZED', 'FAILED')),
    failure_reason  text,
    created_at      timestamptz   NOT NULL,
    -- Layer 3 of the deduplication: the durable safety net against double charges.
    CONSTRAINT payments_idempotency_key_key UNIQUE (idempotency_key),
    CONSTRAINT payments_order_id_key UNIQUE (order_id)
);

-- +goose Down
DROP TABLE payments;
