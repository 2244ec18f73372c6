-- A number that grows with every change to what the collector checks
-- usage against: `skus` (the terms of a SKU: its owner, markup and prices)
-- and `accounts` (an account's currency and owner). Each POST reads these
-- two numbers and answers from the terms and accounts it remembers reading
-- at the same numbers, asking PostgreSQL only for the others
-- (services/collector/src/lookup.rs). A change and its new number commit
-- together: a number seen means every change up to it is visible.
--
-- Creating a SKU or an account changes nothing already remembered (only
-- what exists is remembered), so inserts into `skus` and `accounts` do not
-- count; a new price version does.
CREATE TABLE catalog_generations (
    subject     TEXT PRIMARY KEY CHECK (subject IN ('skus', 'accounts')),
    generation  BIGINT NOT NULL
);
INSERT INTO catalog_generations (subject, generation) VALUES ('skus', 0), ('accounts', 0);

CREATE FUNCTION bump_catalog_generation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE catalog_generations SET generation = generation + 1 WHERE subject = TG_ARGV[0];
    RETURN NULL;
END
$$;

CREATE TRIGGER skus_catalog_generation
    AFTER UPDATE OR DELETE OR TRUNCATE ON skus
    FOR EACH STATEMENT EXECUTE FUNCTION bump_catalog_generation('skus');
CREATE TRIGGER prices_catalog_generation
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON prices
    FOR EACH STATEMENT EXECUTE FUNCTION bump_catalog_generation('skus');
CREATE TRIGGER accounts_catalog_generation
    AFTER UPDATE OF id, currency, owner_provider_id OR DELETE OR TRUNCATE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION bump_catalog_generation('accounts');
