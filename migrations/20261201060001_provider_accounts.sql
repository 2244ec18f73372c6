-- Providers as customers (issue 17): an account may be owned by a provider,
-- the billing account through which it consumes other providers' services
-- (binds them, is billed for them). The platform creates it; the owning
-- provider's key reads its invoices. Customer accounts have no owner.
ALTER TABLE accounts
    ADD COLUMN owner_provider_id TEXT
        CONSTRAINT accounts_owner_provider_id_fkey REFERENCES providers (id);
CREATE INDEX accounts_owner_provider_idx ON accounts (owner_provider_id)
    WHERE owner_provider_id IS NOT NULL;
