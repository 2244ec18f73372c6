-- Wholesale price books (issue 17): a price version is for an audience,
-- `list` (every account, as all were before) or `provider` (accounts that
-- providers own: what an upstream provider charges composing providers),
-- versioned like any price book: a SKU's versions per currency and audience.
-- Rating prices a provider's own account at the wholesale version in
-- effect, where the SKU has one, else at its list price.
ALTER TABLE prices
    ADD COLUMN audience TEXT NOT NULL DEFAULT 'list'
        CONSTRAINT prices_audience_check CHECK (audience IN ('list', 'provider'));
ALTER TABLE prices
    DROP CONSTRAINT prices_version_unique,
    ADD CONSTRAINT prices_version_unique UNIQUE (sku_id, currency, audience, effective_from);
