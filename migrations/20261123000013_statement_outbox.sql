-- One write of a statement row per restatement (found by `tally bench`: at
-- 10,000 events/s every rating batch restates ~1,000 statements, and each
-- was written three times: the version bump, the body, the outbox mark).
--
-- The outbox is now a row per rating transaction listing the account-periods
-- it restated; the publisher deletes it once their statements are on the
-- broker, and a crash before that leaves it for the sweep, which publishes
-- the newest body of each listed statement. A statement row changes once per
-- restatement (version, body and `sealed` in one upsert), and no column of
-- an index changes with it, so the update can stay on its page (HOT).
CREATE TABLE statement_outbox (
    id             BIGSERIAL PRIMARY KEY,
    account_ids    TEXT[] NOT NULL,
    period_starts  TIMESTAMPTZ[] NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT statement_outbox_keys_check
        CHECK (cardinality(account_ids) = cardinality(period_starts) AND cardinality(account_ids) > 0)
);

-- What the old outbox mark had not seen published yet stays pending.
INSERT INTO statement_outbox (account_ids, period_starts)
SELECT array_agg(account_id ORDER BY account_id, period_start),
       array_agg(period_start ORDER BY account_id, period_start)
FROM statements WHERE published_version < version
HAVING count(*) > 0;

DROP INDEX statements_unpublished_idx;
ALTER TABLE statements DROP COLUMN published_version;
ALTER TABLE statements SET (fillfactor = 80);
