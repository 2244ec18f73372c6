-- On a scratch database: it drops and fills its own table, scratch_counted_events.
-- The three layouts of counted_events' indexes compared before migration
-- 20261202090001 (BENCHMARKS.md, "Fewer indexes on counted events"): a table
-- of 1,000,000 rows, then 25 inserts of 20,000 rows; WAL bytes and time per row.
-- Run (the chosen layout):
--   psql -v agg='CREATE INDEX ON scratch_counted_events (account_id, period_start, price_id, binding_id, provider_id, event_time);' \
--        -v idx='CREATE INDEX ON scratch_counted_events USING brin (period_end);' -f counted_events_indexes.sql
-- then counted_events_window.sql with
--   -v extra="AND period_start < '2026-11-01 03:00+00' AND period_end > '2026-11-01 02:00+00'" (or -v extra='').
\set ON_ERROR_STOP 1
DROP TABLE IF EXISTS scratch_counted_events;
CREATE TABLE scratch_counted_events (
    provider_id   TEXT NOT NULL, event_id TEXT NOT NULL, account_id TEXT NOT NULL,
    sku_id TEXT NOT NULL, price_id BIGINT NOT NULL, binding_id TEXT NOT NULL DEFAULT '',
    period_start TIMESTAMPTZ NOT NULL, period_end TIMESTAMPTZ NOT NULL,
    event_time TIMESTAMPTZ NOT NULL, quantity NUMERIC NOT NULL,
    dimensions JSONB NOT NULL DEFAULT '{}', cancelled_by UUID,
    on_behalf_of TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (provider_id, event_id));
:agg
:idx
-- batch generator: n-th batch of 20k rows, event time advancing
CREATE OR REPLACE FUNCTION batch(b int) RETURNS TABLE (provider_id text, event_id text, account_id text, sku_id text,
  price_id bigint, binding_id text, period_start timestamptz, period_end timestamptz, event_time timestamptz,
  quantity numeric, dimensions jsonb, on_behalf_of text) LANGUAGE sql AS $$
  SELECT 'prov-' || (i % 4), gen_random_uuid()::text, 'acct-' || a, 'sku-' || (i % 20), (i % 20)::bigint, '',
         s, s + interval '1 month', t, 1.5, '{}'::jsonb, ''
  FROM (SELECT i, (floor(100000 ^ random()))::int AS a,
               timestamptz '2026-11-01' + (b * 20000 + i) * interval '10 ms' AS t
        FROM generate_series(1, 20000) i) x,
       LATERAL (SELECT date_trunc('month', t - (a % 28) * interval '1 day') + (a % 28) * interval '1 day' AS s) p
  ORDER BY 1, 2 $$;
-- history: 1M rows
INSERT INTO scratch_counted_events (provider_id, event_id, account_id, sku_id, price_id, binding_id, period_start, period_end, event_time, quantity, dimensions, on_behalf_of)
SELECT x.* FROM generate_series(0, 49) b, LATERAL batch(b) x;
VACUUM ANALYZE scratch_counted_events;
CHECKPOINT;
SELECT pg_current_wal_lsn() AS lsn0 \gset
SELECT clock_timestamp() AS t0 \gset
DO $$ BEGIN FOR b IN 50..74 LOOP
  INSERT INTO scratch_counted_events (provider_id, event_id, account_id, sku_id, price_id, binding_id, period_start, period_end, event_time, quantity, dimensions, on_behalf_of)
  SELECT * FROM batch(b);
END LOOP; END $$;
SELECT round(extract(epoch FROM clock_timestamp() - :'t0') * 1e6 / 500000, 2) AS us_per_row_incl_gen,
       pg_wal_lsn_diff(pg_current_wal_lsn(), :'lsn0') / 500000 AS wal_bytes_per_row;
-- generation alone
SELECT clock_timestamp() AS t1 \gset
DO $$ BEGIN FOR b IN 50..74 LOOP PERFORM count(*) FROM batch(b); END LOOP; END $$;
SELECT round(extract(epoch FROM clock_timestamp() - :'t1') * 1e6 / 500000, 2) AS us_per_row_gen_only;
