-- +goose Up
CREATE TABLE drivers (
    driver_id         int  PRIMARY KEY,
    name              text NOT NULL,
    zone              text NOT NULL,
    active_deliveries int  NOT NULL DEFAULT 0 CHECK (active_deliveries >= 0)
);
CREATE INDEX drivers_load ON drivers (active_deliveries, driver_id);

CREATE TABLE deliveries (
    delivery_id     text        PRIMARY KEY,
    order_id        text        NOT NULL UNIQUE,   -- one delivery per order
    driver_id       int         NOT NULL REFERENCES drivers (driver_id),
    zone            text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('ASSIGNED', 'DELIVERED')),
    eta             timestamptz NOT NULL,
    assigned_at     timestamptz NOT NULL,
    eta_checked_at  timestamptz NOT NULL,
    delivered_at    timestamptz
);
-- The scheduler scans active deliveries that are due for a check.
CREATE INDEX deliveries_active ON deliveries (eta_checked_at) WHERE status = 'ASSIGNED';

-- +goose Down
DROP TABLE deliveries;
DROP TABLE drivers;
