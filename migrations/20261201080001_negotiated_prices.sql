-- Contracts (issue 18): negotiated price books and partner agreement
-- before signing. The rules are tally_domain::contract (negotiated and
-- Contract::sign); the repository is tally_platform::contracts.
--
-- A term is a percentage discount (`percent`) or a negotiated price book
-- for one SKU of one provider (`price_book`, the JSON of a price book as
-- POST /v1/provider/skus/{sku}/prices takes it), never both.
ALTER TABLE contract_terms
    ALTER COLUMN percent DROP NOT NULL,
    ADD COLUMN price_book JSONB,
    ADD CONSTRAINT contract_terms_kind_check
        CHECK ((percent IS NULL) <> (price_book IS NULL)),
    ADD CONSTRAINT contract_terms_price_book_scope_check
        CHECK (price_book IS NULL OR (scope = 'skus' AND cardinality(skus) = 1));

-- A contract with a partner-funded term awaits its partners' agreement and
-- is signed by finance afterwards: until then `signed_at` is NULL, and the
-- contract bills nothing (it still counts against overlapping contracts).
-- Contracts stored before this migration were signed when created.
ALTER TABLE contracts ADD COLUMN signed_at TIMESTAMPTZ;
UPDATE contracts SET signed_at = created_at;
