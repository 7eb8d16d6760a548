-- +goose Up
-- CANCELLED: the order's cancellation was accepted before its order.created arrived; the row holds
-- the order's place so that order.created reserves nothing.
ALTER TABLE reservations DROP CONSTRAINT reservations_status_check;
ALTER TABLE reservations ADD CONSTRAINT reservations_status_check CHECK (status IN ('RESERVED', 'REJECTED', 'RELEASED', 'CANCELLED'));

-- +goose Down
-- Rolling back forgets these cancellations: only for a database that has none worth keeping.
DELETE FROM reservations WHERE status = 'CANCELLED';
ALTER TABLE reservations DROP CONSTRAINT reservations_status_check;
ALTER TABLE reservations ADD CONSTRAINT reservations_status_check CHECK (status IN ('RESERVED', 'REJECTED', 'RELEASED'));
