-- Bindings (issue 16): an account's provisioned instance of a provider's
-- service, its plan, its lifecycle, and the outbox that tells the provider.
-- The rules (legal moves, proration, not_bound) are tally_domain::binding
-- and tally_domain::plan; the repositories are tally_platform::bindings and
-- tally_platform::plans.

-- Whether the provider's usage must name an active binding (`resource`).
-- Off for every provider until an operator turns it on: usage sent before
-- bindings existed stays billable as it was.
ALTER TABLE providers ADD COLUMN requires_binding BOOLEAN NOT NULL DEFAULT false;

-- Where a provider receives binding events. The signing secret is not
-- stored: it is derived from the platform's webhook key and the provider's
-- id and generation (tally_platform::webhooks), so rotating it bumps
-- `secret_generation`.
CREATE TABLE provider_webhooks (
    provider_id        TEXT PRIMARY KEY REFERENCES providers (id),
    url                TEXT NOT NULL CONSTRAINT provider_webhooks_url_check CHECK (url ~ '^https?://'),
    secret_generation  INTEGER NOT NULL DEFAULT 1,
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A provider's plans, per resource type.
CREATE TABLE plans (
    id             TEXT PRIMARY KEY,
    provider_id    TEXT NOT NULL REFERENCES providers (id),
    resource_type  TEXT NOT NULL,
    name           TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX plans_provider_idx ON plans (provider_id, resource_type);

-- Effective-dated versions of a plan, per currency (like `prices`):
-- a base fee per billing period, and allowances {sku: quantity} per period.
CREATE TABLE plan_versions (
    id              BIGSERIAL PRIMARY KEY,
    plan_id         TEXT NOT NULL REFERENCES plans (id),
    currency        TEXT NOT NULL CONSTRAINT plan_versions_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
    effective_from  TIMESTAMPTZ NOT NULL,
    base_fee        NUMERIC NOT NULL CONSTRAINT plan_versions_base_fee_check CHECK (base_fee >= 0),
    allowances      JSONB NOT NULL DEFAULT '{}',
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT plan_versions_unique UNIQUE (plan_id, currency, effective_from)
);

CREATE TABLE bindings (
    id                    TEXT PRIMARY KEY,
    account_id            TEXT NOT NULL REFERENCES accounts (id),
    provider_id           TEXT NOT NULL REFERENCES providers (id),
    resource_type         TEXT NOT NULL,
    name                  TEXT NOT NULL,
    provider_resource_id  TEXT,
    plan_id               TEXT NOT NULL REFERENCES plans (id),
    region                TEXT,
    tags                  JSONB NOT NULL DEFAULT '{}',
    status                TEXT NOT NULL CONSTRAINT bindings_status_check
        CHECK (status IN ('requested', 'provisioning', 'active', 'failed', 'suspended', 'deleted')),
    status_message        TEXT,
    requested_at          TIMESTAMPTZ NOT NULL,
    activated_at          TIMESTAMPTZ,
    suspended_at          TIMESTAMPTZ,
    deleted_at            TIMESTAMPTZ,
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT bindings_deleted_check CHECK ((status = 'deleted') = (deleted_at IS NOT NULL))
);
CREATE INDEX bindings_account_idx ON bindings (account_id);
CREATE INDEX bindings_provider_idx ON bindings (provider_id);

-- Every status move of a binding: who made it, when, with what message.
CREATE TABLE binding_status_changes (
    id           BIGSERIAL PRIMARY KEY,
    binding_id   TEXT NOT NULL REFERENCES bindings (id),
    at           TIMESTAMPTZ NOT NULL,
    from_status  TEXT,
    to_status    TEXT NOT NULL,
    actor        TEXT NOT NULL CONSTRAINT binding_status_changes_actor_check
        CHECK (actor IN ('customer', 'platform', 'provider')),
    message      TEXT,
    recorded_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX binding_status_changes_binding_idx ON binding_status_changes (binding_id, id);

-- A binding's plan from `at` on (its first plan at its request time).
CREATE TABLE binding_plan_changes (
    id           BIGSERIAL PRIMARY KEY,
    binding_id   TEXT NOT NULL REFERENCES bindings (id),
    at           TIMESTAMPTZ NOT NULL,
    plan_id      TEXT NOT NULL REFERENCES plans (id),
    recorded_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX binding_plan_changes_binding_idx ON binding_plan_changes (binding_id, id);

-- The outbox of binding events, written in the transaction that changes the
-- binding. Each event has a stable id the provider dedupes by; the worker
-- publishes it on `bindings.events` (key = binding id) and delivers it to
-- the provider's webhook, one binding's events in `seq` order, retrying
-- with backoff until the webhook answers 2xx.
CREATE TABLE binding_outbox (
    seq              BIGSERIAL PRIMARY KEY,
    event_id         UUID NOT NULL CONSTRAINT binding_outbox_event_id_unique UNIQUE,
    binding_id       TEXT NOT NULL REFERENCES bindings (id),
    provider_id      TEXT NOT NULL REFERENCES providers (id),
    body             JSONB NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at     TIMESTAMPTZ,
    delivered_at     TIMESTAMPTZ,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error       TEXT
);
CREATE INDEX binding_outbox_unpublished_idx ON binding_outbox (seq) WHERE published_at IS NULL;
CREATE INDEX binding_outbox_undelivered_idx ON binding_outbox (binding_id, seq) WHERE delivered_at IS NULL;
