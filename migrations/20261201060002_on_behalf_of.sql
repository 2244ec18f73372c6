-- Usage on behalf of a consumer (issue 17). A composing provider's usage of
-- an upstream provider bills the composing provider's own account and names
-- the consumer it was done for by an opaque reference: a random token the
-- platform mints per (composing provider, consumer account). The upstream
-- provider only ever sees the token; the platform resolves it for the
-- composing provider alone.
CREATE TABLE on_behalf_refs (
    token        TEXT PRIMARY KEY,
    provider_id  TEXT NOT NULL REFERENCES providers (id),
    account_id   TEXT NOT NULL REFERENCES accounts (id),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT on_behalf_refs_pair_unique UNIQUE (provider_id, account_id)
);

-- The part of each aggregate (account, period counted in, price version)
-- done on behalf of each reference: what the margin report splits the
-- composing provider's upstream invoice lines by. Written by rating in the
-- batch's transaction, beside `usage_aggregates`.
CREATE TABLE usage_on_behalf (
    account_id    TEXT NOT NULL REFERENCES accounts (id),
    period_start  TIMESTAMPTZ NOT NULL,
    price_id      BIGINT NOT NULL REFERENCES prices (id),
    on_behalf_of  TEXT NOT NULL REFERENCES on_behalf_refs (token),
    quantity      NUMERIC NOT NULL CONSTRAINT usage_on_behalf_quantity_check CHECK (quantity >= 0),
    event_count   BIGINT NOT NULL,
    PRIMARY KEY (account_id, period_start, price_id, on_behalf_of)
);
