-- +goose Up
-- A cancelled delivery keeps its row (and driver, for the record) with status CANCELLED.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_status_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check CHECK (status IN ('ASSIGNED', 'DELIVERED', 'CANCELLED'));
ALTER TABLE deliveries ADD COLUMN cancelled_at timestamptz;

-- delivery-service's decision on each order.cancelled: accepted (refusal NULL) or refused. An
-- accepted cancellation also stops a later payment.authorized from assigning a driver.
CREATE TABLE cancellations (
    order_id       text        PRIMARY KEY,
    reason         text        NOT NULL,
    refusal        text,
    cause_event_id uuid        NOT NULL,
    decided_at     timestamptz NOT NULL
);

-- +goose Down
-- Rolling back forgets cancellations: only for a database that has none worth keeping.
DELETE FROM deliveries WHERE status = 'CANCELLED';
DROP TABLE cancellations;
ALTER TABLE deliveries DROP COLUMN cancelled_at;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_status_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check CHECK (status IN ('ASSIGNED', 'DELIVERED'));
