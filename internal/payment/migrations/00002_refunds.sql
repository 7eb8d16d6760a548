-- +goose Up
-- One row per order stays the rule (UNIQUE order_id): a cancellation accepted before any charge
-- writes the order's row as CANCELLED, so a later charge finds it taken and charges nothing; one
-- accepted after the charge moves AUTHORIZED to REFUNDED, once (refund_key: the delivery.cancelled
-- that caused it, unique like idempotency_key). A CANCELLED row has no amount.
ALTER TABLE payments DROP CONSTRAINT payments_status_check;
ALTER TABLE payments ADD CONSTRAINT payments_status_check CHECK (status IN ('AUTHORIZED', 'FAILED', 'REFUNDED', 'CANCELLED'));
ALTER TABLE payments ALTER COLUMN customer_id DROP NOT NULL;
ALTER TABLE payments ALTER COLUMN amount DROP NOT NULL;
ALTER TABLE payments ALTER COLUMN currency DROP NOT NULL;
ALTER TABLE payments ADD CONSTRAINT payments_charged_has_amount CHECK (status = 'CANCELLED' OR (amount IS NOT NULL AND currency IS NOT NULL));
ALTER TABLE payments ADD COLUMN cancel_reason text;
ALTER TABLE payments ADD COLUMN refund_key text CONSTRAINT payments_refund_key_key UNIQUE;
ALTER TABLE payments ADD COLUMN refunded_at timestamptz;

-- +goose Down
-- Rolling back forgets cancellations and refunds: only for a database that has none worth keeping.
DELETE FROM payments WHERE status IN ('CANCELLED', 'REFUNDED');
ALTER TABLE payments DROP COLUMN refunded_at;
ALTER TABLE payments DROP COLUMN refund_key;
ALTER TABLE payments DROP COLUMN cancel_reason;
ALTER TABLE payments DROP CONSTRAINT payments_charged_has_amount;
ALTER TABLE payments ALTER COLUMN currency SET NOT NULL;
ALTER TABLE payments ALTER COLUMN amount SET NOT NULL;
ALTER TABLE payments ALTER COLUMN customer_id SET NOT NULL;
ALTER TABLE payments DROP CONSTRAINT payments_status_check;
ALTER TABLE payments ADD CONSTRAINT payments_status_check CHECK (status IN ('AUTHORIZED', 'FAILED'));
