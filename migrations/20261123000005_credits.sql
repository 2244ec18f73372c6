-- Platform credits: grants, their ledger, and what invoices show of them.

-- Usage per hour replaces the daily roll-up: credits cover usage inside their
-- validity window (whole hours), and the bill's chart sums hours into days.
CREATE TABLE usage_hourly (
    account_id    TEXT NOT NULL REFERENCES accounts (id),
    period_start  TIMESTAMPTZ NOT NULL,
    price_id      BIGINT NOT NULL REFERENCES prices (id),
    hour          TIMESTAMPTZ NOT NULL CONSTRAINT usage_hourly_whole_hour CHECK (date_trunc('hour', hour) = hour),
    quantity      NUMERIC NOT NULL CONSTRAINT usage_hourly_quantity_check CHECK (quantity >= 0),
    event_count   BIGINT NOT NULL,
    PRIMARY KEY (account_id, period_start, price_id, hour)
);
INSERT INTO usage_hourly (account_id, period_start, price_id, hour, quantity, event_count)
SELECT account_id, period_start, price_id, day::timestamp AT TIME ZONE 'UTC', quantity, event_count
FROM usage_daily;
DROP TABLE usage_daily;

-- A grant of credits to one account, in the account's currency. Validity is
-- [effective_at, expires_at) in whole hours. `eligibility` with `eligible_ids`
-- says what it may pay for.
CREATE TABLE credit_grants (
    id              BIGSERIAL PRIMARY KEY,
    account_id      TEXT NOT NULL REFERENCES accounts (id),
    name            TEXT NOT NULL CONSTRAINT credit_grants_name_check CHECK (length(name) BETWEEN 1 AND 200),
    kind            TEXT NOT NULL CONSTRAINT credit_grants_kind_check CHECK (kind IN ('promotional', 'prepaid', 'programme')),
    cost_basis      NUMERIC CONSTRAINT credit_grants_cost_basis_check CHECK (cost_basis >= 0),
    currency        TEXT NOT NULL CONSTRAINT credit_grants_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
    amount          NUMERIC NOT NULL CONSTRAINT credit_grants_amount_check CHECK (amount > 0),
    priority        INT NOT NULL DEFAULT 100,
    effective_at    TIMESTAMPTZ NOT NULL CONSTRAINT credit_grants_effective_hour CHECK (date_trunc('hour', effective_at) = effective_at),
    expires_at      TIMESTAMPTZ CONSTRAINT credit_grants_expires_hour CHECK (date_trunc('hour', expires_at) = expires_at),
    eligibility     TEXT NOT NULL CONSTRAINT credit_grants_eligibility_check CHECK (eligibility IN ('all_usage', 'first_party_only', 'providers', 'skus')),
    eligible_ids    TEXT[] NOT NULL DEFAULT '{}',
    cap_per_period  NUMERIC CONSTRAINT credit_grants_cap_check CHECK (cap_per_period > 0),
    voided_at       TIMESTAMPTZ,
    voided_amount   NUMERIC NOT NULL DEFAULT 0 CONSTRAINT credit_grants_voided_check CHECK (voided_amount >= 0 AND voided_amount <= amount),
    void_reason     TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT credit_grants_window_check CHECK (expires_at IS NULL OR expires_at > effective_at),
    CONSTRAINT credit_grants_prepaid_check CHECK ((kind = 'prepaid') = (cost_basis IS NOT NULL)),
    CONSTRAINT credit_grants_scope_check CHECK ((eligibility IN ('providers', 'skus')) = (cardinality(eligible_ids) > 0))
);
CREATE INDEX credit_grants_account_idx ON credit_grants (account_id, id);

-- Every movement of a grant's balance: `grant` (+amount), one `draw` per
-- grant per invoice (account-period; rewritten while the invoice is a
-- draft), `void` (the unused part taken back). Amounts are positive; the
-- kind gives the direction.
CREATE TABLE credit_ledger (
    id                 BIGSERIAL PRIMARY KEY,
    grant_id           BIGINT NOT NULL REFERENCES credit_grants (id),
    account_id         TEXT NOT NULL REFERENCES accounts (id),
    kind               TEXT NOT NULL CONSTRAINT credit_ledger_kind_check CHECK (kind IN ('grant', 'draw', 'void')),
    period_start       TIMESTAMPTZ,
    amount             NUMERIC NOT NULL CONSTRAINT credit_ledger_amount_check CHECK (amount >= 0),
    statement_version  BIGINT,
    note               TEXT,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT credit_ledger_draw_period CHECK ((kind = 'draw') = (period_start IS NOT NULL))
);
CREATE UNIQUE INDEX credit_ledger_draw_unique ON credit_ledger (grant_id, period_start) WHERE kind = 'draw';
CREATE INDEX credit_ledger_account_idx ON credit_ledger (account_id, period_start);

-- Accounts whose open statements must be re-rated because a grant changed;
-- rating takes them in the same transaction that re-rates.
CREATE TABLE credit_recompute (
    account_id    TEXT PRIMARY KEY REFERENCES accounts (id),
    requested_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Invoices: the subtotal of the lines, the credits, and `total` as due.
ALTER TABLE invoices
    ADD COLUMN subtotal NUMERIC,
    ADD COLUMN credits_total NUMERIC NOT NULL DEFAULT 0;
UPDATE invoices SET subtotal = total;
ALTER TABLE invoices ALTER COLUMN subtotal SET NOT NULL;

CREATE TABLE invoice_credits (
    invoice_id  UUID NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    position    INT NOT NULL,
    grant_id    BIGINT NOT NULL REFERENCES credit_grants (id),
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    amount      NUMERIC NOT NULL CONSTRAINT invoice_credits_amount_check CHECK (amount > 0),
    lines       JSONB NOT NULL,
    PRIMARY KEY (invoice_id, position)
);
