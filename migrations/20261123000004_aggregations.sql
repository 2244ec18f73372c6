-- How a SKU's usage aggregates over a period: sum of quantities, count of
-- events, maximum quantity, latest quantity (by event time, then event id),
-- or the number of distinct values of a named dimension.
ALTER TABLE skus
    ADD CONSTRAINT skus_aggregation_check
        CHECK (aggregation IN ('sum', 'count', 'max', 'latest', 'unique_count')),
    ADD COLUMN aggregation_dimension TEXT,
    ADD CONSTRAINT skus_aggregation_dimension_check
        CHECK ((aggregation = 'unique_count') = (aggregation_dimension IS NOT NULL));

ALTER TABLE usage_aggregates
    ADD COLUMN max_quantity NUMERIC NOT NULL DEFAULT 0,
    ADD COLUMN latest_time TIMESTAMPTZ,
    ADD COLUMN latest_event_id TEXT,
    ADD COLUMN latest_quantity NUMERIC NOT NULL DEFAULT 0;

-- Distinct dimension values per aggregate, for `unique_count` SKUs.
CREATE TABLE usage_distinct_values (
    account_id    TEXT NOT NULL,
    period_start  TIMESTAMPTZ NOT NULL,
    price_id      BIGINT NOT NULL REFERENCES prices (id),
    value         TEXT NOT NULL,
    PRIMARY KEY (account_id, period_start, price_id, value)
);
