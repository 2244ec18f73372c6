-- A refused correction's lookup of an event id under another provider
-- (services/collector/src/corrections.rs), before and after, on a scratch
-- database of 2,000,000 counted events of 10 providers:
--   psql -h 127.0.0.1 -p 5439 -U postgres -d postgres -f docs/bench/correction_refusal.sql
DROP DATABASE IF EXISTS scratch_refusal;
CREATE DATABASE scratch_refusal;
\c scratch_refusal
CREATE TABLE providers (id TEXT PRIMARY KEY);
INSERT INTO providers SELECT 'p' || g FROM generate_series(0, 9) g;
CREATE TABLE counted_events (provider_id TEXT NOT NULL, event_id TEXT NOT NULL, account_id TEXT NOT NULL,
  event_time TIMESTAMPTZ NOT NULL, quantity NUMERIC NOT NULL, PRIMARY KEY (provider_id, event_id));
INSERT INTO counted_events SELECT 'p' || (g % 10), 'e' || g, 'a' || (g % 100000), now(), 1
  FROM generate_series(1, 2000000) g;
ANALYZE;
\echo before: the id alone
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT EXISTS (SELECT 1 FROM counted_events WHERE event_id = 'nope');
\echo after: under each provider
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT EXISTS (SELECT 1 FROM providers p CROSS JOIN LATERAL (
                 SELECT 1 FROM counted_events c WHERE c.provider_id = p.id AND c.event_id = 'nope'
                 LIMIT 1) c);
\c postgres
DROP DATABASE scratch_refusal;
