-- Contracts (issue 18): what an account pays differently from list. The
-- rules (validation, which term discounts a line, who funds it, the
-- commitment true-up) are tally_domain::contract; the repository is
-- tally_platform::contracts. At most one contract of an account is in force
-- at a time: the API checks it under a row lock on the account.
CREATE TABLE contracts (
    id                BIGSERIAL PRIMARY KEY,
    account_id        TEXT NOT NULL REFERENCES accounts (id),
    starts_at         TIMESTAMPTZ NOT NULL,
    ends_at           TIMESTAMPTZ NOT NULL,
    currency          TEXT NOT NULL CONSTRAINT contracts_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
    price_protection  BOOLEAN NOT NULL DEFAULT false,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT contracts_term_check CHECK (starts_at < ends_at)
);
CREATE INDEX contracts_account_idx ON contracts (account_id, starts_at);

-- A percentage discount, effective [effective_from, effective_to) inside
-- the contract's term. `scope` is all, provider or skus (of `provider_id`).
-- A partner-funded term discounts nothing until `partner_agreed_at`.
CREATE TABLE contract_terms (
    id                 BIGSERIAL PRIMARY KEY,
    contract_id        BIGINT NOT NULL REFERENCES contracts (id),
    scope              TEXT NOT NULL CONSTRAINT contract_terms_scope_check CHECK (scope IN ('all', 'provider', 'skus')),
    provider_id        TEXT REFERENCES providers (id),
    skus               TEXT[] NOT NULL DEFAULT '{}',
    percent            NUMERIC NOT NULL CONSTRAINT contract_terms_percent_check CHECK (percent > 0 AND percent <= 100),
    funded_by          TEXT NOT NULL CONSTRAINT contract_terms_funded_by_check CHECK (funded_by IN ('platform', 'partner')),
    effective_from     TIMESTAMPTZ NOT NULL,
    effective_to       TIMESTAMPTZ NOT NULL,
    partner_agreed_at  TIMESTAMPTZ,
    CONSTRAINT contract_terms_dates_check CHECK (effective_from < effective_to),
    CONSTRAINT contract_terms_provider_check CHECK ((scope = 'all') = (provider_id IS NULL)),
    CONSTRAINT contract_terms_agreement_check CHECK (funded_by = 'partner' OR partner_agreed_at IS NULL)
);
CREATE INDEX contract_terms_contract_idx ON contract_terms (contract_id);
CREATE INDEX contract_terms_provider_idx ON contract_terms (provider_id) WHERE funded_by = 'partner';

-- A minimum spend per commitment period (month, quarter or year from
-- `starts_at`), inside the contract's term.
CREATE TABLE contract_commitments (
    id           BIGSERIAL PRIMARY KEY,
    contract_id  BIGINT NOT NULL REFERENCES contracts (id),
    cadence      TEXT NOT NULL CONSTRAINT contract_commitments_cadence_check CHECK (cadence IN ('month', 'quarter', 'year')),
    minimum      NUMERIC NOT NULL CONSTRAINT contract_commitments_minimum_check CHECK (minimum > 0),
    starts_at    TIMESTAMPTZ NOT NULL,
    ends_at      TIMESTAMPTZ NOT NULL,
    CONSTRAINT contract_commitments_dates_check CHECK (starts_at < ends_at)
);
CREATE INDEX contract_commitments_contract_idx ON contract_commitments (contract_id);
