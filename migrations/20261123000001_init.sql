-- Tally's initial schema: catalog, keys, rating state, invoices.
-- Amounts are NUMERIC with their ISO 4217 currency beside them.

CREATE TABLE providers (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL CONSTRAINT providers_kind_check CHECK (kind IN ('first_party', 'partner')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    currency    TEXT NOT NULL CONSTRAINT accounts_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE skus (
    id           TEXT PRIMARY KEY,
    provider_id  TEXT NOT NULL REFERENCES providers (id),
    name         TEXT NOT NULL,
    unit         TEXT NOT NULL DEFAULT 'unit',
    aggregation  TEXT NOT NULL DEFAULT 'sum',
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX skus_provider_idx ON skus (provider_id);

-- One row per price version: a SKU's price in one currency from `effective_from` on,
-- until the next version of the same SKU and currency. `model` is the domain PriceModel.
CREATE TABLE prices (
    id              BIGSERIAL PRIMARY KEY,
    sku_id          TEXT NOT NULL REFERENCES skus (id),
    currency        TEXT NOT NULL CONSTRAINT prices_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
    effective_from  TIMESTAMPTZ NOT NULL,
    model           JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT prices_version_unique UNIQUE (sku_id, currency, effective_from)
);

-- API keys are stored as SHA-256 of the secret; the secret is shown once.
CREATE TABLE api_keys (
    id           UUID PRIMARY KEY,
    key_hash     BYTEA NOT NULL CONSTRAINT api_keys_hash_unique UNIQUE,
    prefix       TEXT NOT NULL,
    role         TEXT NOT NULL CONSTRAINT api_keys_role_check CHECK (role IN ('admin', 'finance', 'provider', 'customer')),
    provider_id  TEXT REFERENCES providers (id),
    account_id   TEXT REFERENCES accounts (id),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at   TIMESTAMPTZ,
    CONSTRAINT api_keys_provider_scope CHECK ((role = 'provider') = (provider_id IS NOT NULL)),
    CONSTRAINT api_keys_customer_scope CHECK ((role = 'customer') = (account_id IS NOT NULL))
);

-- Dedupe: one row per (provider, event id) that rating has counted.
CREATE TABLE processed_events (
    provider_id   TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    account_id    TEXT NOT NULL,
    event_time    TIMESTAMPTZ NOT NULL,
    processed_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (provider_id, event_id)
);
CREATE INDEX processed_events_processed_at_idx ON processed_events (processed_at);

-- Period aggregates per account, period and price version (the price names the SKU).
CREATE TABLE usage_aggregates (
    account_id    TEXT NOT NULL REFERENCES accounts (id),
    period_start  TIMESTAMPTZ NOT NULL,
    period_end    TIMESTAMPTZ NOT NULL,
    price_id      BIGINT NOT NULL REFERENCES prices (id),
    quantity      NUMERIC NOT NULL CONSTRAINT usage_aggregates_quantity_check CHECK (quantity >= 0),
    event_count   BIGINT NOT NULL,
    PRIMARY KEY (account_id, period_start, price_id)
);

-- The newest statement snapshot per account-period, and how far it was published
-- (an outbox: rows with published_version < version are (re)published).
CREATE TABLE statements (
    account_id         TEXT NOT NULL REFERENCES accounts (id),
    period_start       TIMESTAMPTZ NOT NULL,
    period_end         TIMESTAMPTZ NOT NULL,
    version            BIGINT NOT NULL,
    body               JSONB NOT NULL,
    published_version  BIGINT NOT NULL DEFAULT 0,
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, period_start)
);
CREATE INDEX statements_unpublished_idx ON statements (account_id, period_start) WHERE published_version < version;

CREATE TABLE invoices (
    id                 UUID PRIMARY KEY,
    account_id         TEXT NOT NULL REFERENCES accounts (id),
    period_start       TIMESTAMPTZ NOT NULL,
    period_end         TIMESTAMPTZ NOT NULL,
    status             TEXT NOT NULL DEFAULT 'draft' CONSTRAINT invoices_status_check CHECK (status IN ('draft', 'finalized', 'void')),
    number             TEXT CONSTRAINT invoices_number_unique UNIQUE,
    currency           TEXT NOT NULL,
    statement_version  BIGINT NOT NULL,
    total              NUMERIC NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT invoices_account_period_unique UNIQUE (account_id, period_start)
);
CREATE INDEX invoices_period_idx ON invoices (period_start, account_id);

CREATE TABLE invoice_lines (
    invoice_id            UUID NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    position              INT NOT NULL,
    provider_id           TEXT NOT NULL,
    provider_name         TEXT NOT NULL,
    provider_kind         TEXT NOT NULL,
    sku_id                TEXT NOT NULL,
    description           TEXT NOT NULL,
    unit                  TEXT NOT NULL,
    quantity              NUMERIC NOT NULL,
    unit_price            NUMERIC,
    amount                NUMERIC NOT NULL,
    currency              TEXT NOT NULL,
    price_id              BIGINT NOT NULL,
    price_effective_from  TIMESTAMPTZ NOT NULL,
    event_count           BIGINT NOT NULL,
    PRIMARY KEY (invoice_id, position)
);
