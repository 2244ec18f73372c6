-- Invoice lifecycle, part one: anchored periods, seals ordered with the
-- events, and late usage billed as adjustments on the next open period.

-- The day of the month an account's periods start on (1 = calendar months).
ALTER TABLE accounts ADD COLUMN billing_anchor_day SMALLINT NOT NULL DEFAULT 1
    CONSTRAINT accounts_billing_anchor_day_check CHECK (billing_anchor_day BETWEEN 1 AND 28);

-- How far each account's periods are closed. Written only by rating, when it
-- reads a seal marker in the account's partition of `usage.events`: events
-- before the marker are in the closed periods, events after it for a closed
-- period are late usage.
CREATE TABLE account_seals (
    account_id      TEXT PRIMARY KEY REFERENCES accounts (id),
    sealed_through  TIMESTAMPTZ NOT NULL,
    sealed_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Seal markers invoicing has written, so its closer does not ask each tick.
CREATE TABLE seal_requests (
    account_id    TEXT PRIMARY KEY REFERENCES accounts (id),
    through       TIMESTAMPTZ NOT NULL,
    requested_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Late usage: the sealed periods (origins) whose adjustments an open period
-- (target) bills.
CREATE TABLE late_usage (
    account_id    TEXT NOT NULL REFERENCES accounts (id),
    target_start  TIMESTAMPTZ NOT NULL,
    origin_start  TIMESTAMPTZ NOT NULL,
    origin_end    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (account_id, target_start, origin_start)
);

-- What has been billed for each sealed period, as statement lines (JSON):
-- its own final statement plus every adjustment of it sealed since. An
-- adjustment bills the period priced with everything known minus this.
CREATE TABLE billed_periods (
    account_id    TEXT NOT NULL REFERENCES accounts (id),
    period_start  TIMESTAMPTZ NOT NULL,
    lines         TEXT NOT NULL,
    PRIMARY KEY (account_id, period_start)
);

ALTER TABLE statements ADD COLUMN sealed BOOLEAN NOT NULL DEFAULT false;

-- When invoicing received the sealed (final) statement: finalization waits for it.
ALTER TABLE invoices ADD COLUMN sealed_at TIMESTAMPTZ;
CREATE INDEX invoices_sealed_drafts_idx ON invoices (period_end, account_id)
    WHERE status = 'draft' AND sealed_at IS NOT NULL;

-- An adjustment line names the service period it bills late usage of.
ALTER TABLE invoice_lines
    ADD COLUMN adjusts_period_start TIMESTAMPTZ,
    ADD COLUMN adjusts_period_end TIMESTAMPTZ;
