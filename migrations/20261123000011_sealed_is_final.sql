-- Guards of the lifecycle in the database itself.
--
-- A sealed statement is final: only its outbox mark (`published_version`)
-- may still move.
CREATE FUNCTION tally_refuse_sealed_statement_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.account_id, NEW.period_start, NEW.period_end, NEW.version, NEW.body, NEW.sealed)
       IS DISTINCT FROM
       (OLD.account_id, OLD.period_start, OLD.period_end, OLD.version, OLD.body, OLD.sealed) THEN
        RAISE EXCEPTION 'statement of % from % is sealed', OLD.account_id, OLD.period_start
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER statements_sealed BEFORE UPDATE ON statements
    FOR EACH ROW WHEN (OLD.sealed) EXECUTE FUNCTION tally_refuse_sealed_statement_change();

-- A draft leaves `draft` only to be finalized, with its number, when and
-- after its final statement arrived (never straight to `void`).
CREATE FUNCTION tally_check_draft_transition() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'void'
       OR (NEW.status = 'finalized'
           AND (NEW.number IS NULL OR NEW.finalized_at IS NULL OR NEW.sealed_at IS NULL)) THEN
        RAISE EXCEPTION 'invoice % is a draft: it can only be finalized, with its number, once sealed', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER invoices_draft_transition BEFORE UPDATE ON invoices
    FOR EACH ROW WHEN (OLD.status = 'draft' AND NEW.status <> 'draft')
    EXECUTE FUNCTION tally_check_draft_transition();

-- The closer's question each round: which accounts have a draft not sealed yet.
CREATE INDEX invoices_open_drafts_idx ON invoices (account_id, period_start)
    WHERE status = 'draft' AND sealed_at IS NULL;
