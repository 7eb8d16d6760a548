-- +goose Up
CREATE TABLE stock (
    item_id    text        PRIMARY KEY,
    name       text        NOT NULL,
    -- Units free to reserve, and units held by live (RESERVED) reservations. Their sum is the stock
    -- on hand, which changes only through the admin API.
    available  int         NOT NULL CHECK (available >= 0),
    reserved   int         NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE reservations (
    reservation_id uuid        PRIMARY KEY,
    order_id       text        NOT NULL UNIQUE,   -- one reservation (or rejection) per order; any envelope orderId
    status         text        NOT NULL CHECK (status IN ('RESERVED', 'REJECTED', 'RELEASED')),
    reason         text,
    created_at     timestamptz NOT NULL,
    released_at    timestamptz
);

CREATE TABLE reservation_items (
    reservation_id uuid NOT NULL REFERENCES reservations (reservation_id),
    item_id        text NOT NULL,
    quantity       int  NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (reservation_id, item_id)
);

-- +goose Down
DROP TABLE reservation_items;
DROP TABLE reservations;
DROP TABLE stock;
