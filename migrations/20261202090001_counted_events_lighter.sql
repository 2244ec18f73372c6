-- `counted_events` under two B-tree indexes instead of four (issue 19): its
-- insert, a row per counted event, was PostgreSQL's busiest statement in
-- `tally bench` at 100,000 accounts (BENCHMARKS.md, "Where PostgreSQL's time
-- goes"), and every index on it is written with every event.
--
-- * The aggregate index also carries the provider and the event time, so a
--   backfill's window (account, provider, event times), bounded by the
--   periods it meets, is read from the account's entries of those periods
--   in the index: the window index goes.
-- * The retention prune deletes whole periods that ended before the cutoff:
--   period ends follow the order rows are written in, so a BRIN index (a
--   few pages) finds them, where a B-tree took an entry per event.
DROP INDEX counted_events_window_idx;
DROP INDEX counted_events_period_end_idx;
DROP INDEX counted_events_aggregate_idx;
CREATE INDEX counted_events_aggregate_idx
    ON counted_events (account_id, period_start, price_id, binding_id, provider_id, event_time);
CREATE INDEX counted_events_period_end_brin ON counted_events USING brin (period_end);
