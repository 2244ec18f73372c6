-- The dedupe window, bounded (issue 20 item 6): `processed_events` is
-- partitioned by range of event time, and whole partitions that fell out of
-- the dedupe window are dropped (rating's periodic prune, `tally dedupe
-- prune`), so the table stays flat over months of traffic
-- (tally_domain::dedupe, services/rating/README.md "Dedupe window").
--
-- A partitioned table's unique key must include the partition key, so the
-- key is (provider_id, event_id, event_time): a copy of an id with the same
-- time (a redelivery, a replay) meets it; rating finds a copy with another
-- time by probing (provider_id, event_id) across the partitions, which are
-- few (each spans the whole window).
--
-- Existing rows are kept: they are copied into one partition that runs from
-- the beginning of time to the end of the later of today and the newest
-- event time stored; it is dropped, like any other, once it ends before the
-- window. Rating creates the partitions after it.
ALTER TABLE processed_events RENAME TO processed_events_unpartitioned;
ALTER TABLE processed_events_unpartitioned
    RENAME CONSTRAINT processed_events_pkey TO processed_events_unpartitioned_pkey;

CREATE TABLE processed_events (
    provider_id   TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    account_id    TEXT NOT NULL,
    event_time    TIMESTAMPTZ NOT NULL,
    processed_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (provider_id, event_id, event_time)
) PARTITION BY RANGE (event_time);

-- The partitions of processed_events, as rating made them: event times in
-- [starts, ends) (starts NULL: from the beginning of time). Written in the
-- transaction that creates or drops the partition.
CREATE TABLE dedupe_partitions (
    name    TEXT PRIMARY KEY,
    starts  TIMESTAMPTZ,
    ends    TIMESTAMPTZ NOT NULL UNIQUE,
    CONSTRAINT dedupe_partitions_span CHECK (starts IS NULL OR starts < ends)
);

DO $$
DECLARE
    ends TIMESTAMPTZ := date_trunc(
        'day',
        greatest(now(), (SELECT max(event_time) FROM processed_events_unpartitioned)),
        'UTC'
    ) + interval '1 day';
BEGIN
    EXECUTE format(
        'CREATE TABLE processed_events_initial PARTITION OF processed_events
         FOR VALUES FROM (MINVALUE) TO (%L)',
        ends
    );
    INSERT INTO dedupe_partitions (name, starts, ends)
    VALUES ('processed_events_initial', NULL, ends);
END
$$;

INSERT INTO processed_events (provider_id, event_id, account_id, event_time, processed_at)
SELECT provider_id, event_id, account_id, event_time, processed_at
FROM processed_events_unpartitioned;

DROP TABLE processed_events_unpartitioned;
