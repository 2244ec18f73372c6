-- A dot separates a provider's id from its SKU names (`dbco.db.hour`), so a
-- provider id with a dot (`dbco.eu`) lives inside another provider's
-- namespace (`dbco`) and one could take the other's SKU ids (issue 14,
-- item 7). New provider ids have no dots (catalog::create_provider refuses
-- them with `invalid_provider_id`, and so does this constraint). NOT VALID:
-- providers created before keep their ids; catalog::create_sku keeps their
-- SKUs apart by the longest provider prefix (docs/operations.md).
ALTER TABLE providers
    ADD CONSTRAINT providers_id_has_no_dot CHECK (strpos(id, '.') = 0) NOT VALID;
