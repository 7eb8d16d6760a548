-- +goose Up
-- The periodic purge deletes by age.
CREATE INDEX processed_events_processed_at ON processed_events (processed_at);

-- +goose Down
DROP INDEX processed_events_processed_at;
