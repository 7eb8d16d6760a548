-- +goose Up
-- Stock on hand: set only by the seed and the admin API, so that conservation can be checked:
-- available + reserved must always equal on_hand.
ALTER TABLE stock ADD COLUMN on_hand int;
UPDATE stock SET on_hand = available + reserved;
ALTER TABLE stock ALTER COLUMN on_hand SET NOT NULL;

-- +goose Down
ALTER TABLE stock DROP COLUMN on_hand;
