-- Usage corrections (issue 20): a provider cancels or amends an event it
-- sent, or replaces its usage of a past window (a backfill). Rating applies
-- them in order with the usage (a `correction` message on `usage.events`,
-- keyed by the account), so it needs each counted event's values: the
-- aggregates' max, latest and distinct values cannot be taken back without
-- them. `processed_events` (the dedupe set) keeps its shape.

-- The values of each counted event, where its aggregates count it: kept
-- while its period may still be corrected (rows of periods that ended
-- before the ingest window are pruned with `tally_rating::corrections_repo::prune`).
CREATE TABLE counted_events (
    provider_id   TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    account_id    TEXT NOT NULL,
    sku_id        TEXT NOT NULL,
    price_id      BIGINT NOT NULL,
    binding_id    TEXT NOT NULL DEFAULT '',
    period_start  TIMESTAMPTZ NOT NULL,
    period_end    TIMESTAMPTZ NOT NULL,
    event_time    TIMESTAMPTZ NOT NULL,
    quantity      NUMERIC NOT NULL,
    dimensions    JSONB NOT NULL DEFAULT '{}',
    -- The correction that cancelled or replaced it: it no longer counts.
    cancelled_by  UUID,
    PRIMARY KEY (provider_id, event_id)
);
CREATE INDEX counted_events_aggregate_idx
    ON counted_events (account_id, period_start, price_id, binding_id);
CREATE INDEX counted_events_window_idx ON counted_events (account_id, provider_id, event_time);
CREATE INDEX counted_events_period_end_idx ON counted_events (period_end);

-- Each correction as rating applied (or refused) it: who asked, when, why.
CREATE TABLE usage_corrections (
    id            UUID PRIMARY KEY,
    kind          TEXT NOT NULL CONSTRAINT usage_corrections_kind_check
                      CHECK (kind IN ('cancel', 'amend', 'backfill')),
    provider_id   TEXT NOT NULL,
    account_id    TEXT NOT NULL,
    event_id      TEXT,
    window_start  TIMESTAMPTZ,
    window_end    TIMESTAMPTZ,
    reason        TEXT NOT NULL,
    requested_by  TEXT NOT NULL,
    requested_at  TIMESTAMPTZ NOT NULL,
    applied_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    status        TEXT NOT NULL CONSTRAINT usage_corrections_status_check
                      CHECK (status IN ('applied', 'refused')),
    code          TEXT,
    CONSTRAINT usage_corrections_code_check CHECK ((status = 'refused') = (code IS NOT NULL))
);
CREATE INDEX usage_corrections_provider_idx ON usage_corrections (provider_id, requested_at);

-- What a correction changed, one row per event: its values before and
-- after, the period whose usage changed, and the period whose statement
-- bills the change (the period itself while open; the account's next open
-- period, as an adjustment, once it is sealed).
CREATE TABLE usage_correction_changes (
    correction_id UUID NOT NULL REFERENCES usage_corrections (id),
    provider_id   TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    account_id    TEXT NOT NULL,
    change        TEXT NOT NULL CONSTRAINT usage_correction_changes_change_check
                      CHECK (change IN ('cancelled', 'amended', 'added')),
    previous      JSONB,
    current       JSONB,
    period_start  TIMESTAMPTZ NOT NULL,
    billed_in     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (correction_id, provider_id, event_id)
);
CREATE INDEX usage_correction_changes_period_idx ON usage_correction_changes (account_id, period_start);
CREATE INDEX usage_correction_changes_billed_idx ON usage_correction_changes (account_id, billed_in);
