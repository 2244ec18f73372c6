-- A one-hour backfill window of the busiest and of a small account, and the
-- retention prune, under EXPLAIN (ANALYZE, BUFFERS), on the table
-- counted_events_indexes.sql leaves (:extra: the period bound, or empty).
\set ON_ERROR_STOP 1
\timing off
SET max_parallel_workers_per_gather = 0;
SELECT count(*) AS rows_acct1 FROM scratch_counted_events WHERE account_id = 'acct-1';
-- a one-hour backfill of the busiest account
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT event_id FROM scratch_counted_events
 WHERE account_id = 'acct-1' AND provider_id = 'prov-1' AND event_time >= '2026-11-01 02:00+00' AND event_time < '2026-11-01 03:00+00'
   AND cancelled_by IS NULL :extra;
-- a one-hour backfill of a small account
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT event_id FROM scratch_counted_events
 WHERE account_id = 'acct-977' AND provider_id = 'prov-1' AND event_time >= '2026-11-01 02:00+00' AND event_time < '2026-11-01 03:00+00'
   AND cancelled_by IS NULL :extra;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) DELETE FROM scratch_counted_events WHERE period_end < '2026-10-20';
