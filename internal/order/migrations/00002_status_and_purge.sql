-- +goose Up
-- order-service follows the saga (track.go): the rank of the status and the occurredAt of the event
-- that set it (NULL: CREATED, set at created_at). Nullable, so adding it rewrites no rows.
ALTER TABLE orders ADD COLUMN status_rank smallint NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN status_at timestamptz;
-- The periodic purge deletes Idempotency-Keys by age.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

-- +goose Down
DROP INDEX idempotency_keys_created_at;
ALTER TABLE orders DROP COLUMN status_at;
ALTER TABLE orders DROP COLUMN status_rank;
