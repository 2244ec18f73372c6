-- Daily roll-up of the period aggregates, for the bill's spend-over-time chart.
CREATE TABLE usage_daily (
    account_id    TEXT NOT NULL REFERENCES accounts (id),
    period_start  TIMESTAMPTZ NOT NULL,
    day           DATE NOT NULL,
    price_id      BIGINT NOT NULL REFERENCES prices (id),
    quantity      NUMERIC NOT NULL CONSTRAINT usage_daily_quantity_check CHECK (quantity >= 0),
    event_count   BIGINT NOT NULL,
    PRIMARY KEY (account_id, period_start, day, price_id)
);
