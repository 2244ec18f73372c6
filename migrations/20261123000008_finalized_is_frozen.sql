-- Finalized means frozen, in the database too: once an invoice leaves
-- `draft`, its amounts, number, account and period never change and its
-- lines and credits can be neither changed, added nor removed; the only
-- change left is `finalized` → `void` (corrections are credit notes).
-- Invoice numbers are gap-free per issuer and year: the counter row is taken
-- in the finalizing transaction, so a rollback gives the number back.

ALTER TABLE invoices ADD COLUMN finalized_at TIMESTAMPTZ;

CREATE TABLE invoice_number_sequences (
    issuer      TEXT NOT NULL,
    year        INT NOT NULL,
    last_value  BIGINT NOT NULL CONSTRAINT invoice_number_sequences_positive CHECK (last_value > 0),
    PRIMARY KEY (issuer, year)
);

CREATE FUNCTION tally_refuse_finalized_invoice_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'draft' THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'invoice % is %: it cannot be deleted', OLD.id, OLD.status
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF (NEW.account_id, NEW.period_start, NEW.period_end, NEW.currency, NEW.number,
        NEW.statement_version, NEW.subtotal, NEW.credits_total, NEW.total, NEW.finalized_at)
       IS DISTINCT FROM
       (OLD.account_id, OLD.period_start, OLD.period_end, OLD.currency, OLD.number,
        OLD.statement_version, OLD.subtotal, OLD.credits_total, OLD.total, OLD.finalized_at)
       OR NOT (NEW.status = OLD.status OR (OLD.status = 'finalized' AND NEW.status = 'void')) THEN
        RAISE EXCEPTION 'invoice % is %: it is frozen', OLD.id, OLD.status
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER invoices_frozen BEFORE UPDATE OR DELETE ON invoices
    FOR EACH ROW EXECUTE FUNCTION tally_refuse_finalized_invoice_change();

-- Lines and credits: statement-level checks over the transition tables (one
-- join per statement, not a lookup per row: invoicing writes thousands).
CREATE FUNCTION tally_refuse_frozen_children() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    frozen UUID;
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        SELECT i.id INTO frozen FROM new_rows r JOIN invoices i ON i.id = r.invoice_id
        WHERE i.status <> 'draft' LIMIT 1;
    END IF;
    IF frozen IS NULL AND TG_OP IN ('UPDATE', 'DELETE') THEN
        SELECT i.id INTO frozen FROM old_rows r JOIN invoices i ON i.id = r.invoice_id
        WHERE i.status <> 'draft' LIMIT 1;
    END IF;
    IF frozen IS NOT NULL THEN
        RAISE EXCEPTION 'invoice % is not a draft: its % are frozen', frozen, TG_TABLE_NAME
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER invoice_lines_frozen_insert AFTER INSERT ON invoice_lines
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tally_refuse_frozen_children();
CREATE TRIGGER invoice_lines_frozen_update AFTER UPDATE ON invoice_lines
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tally_refuse_frozen_children();
CREATE TRIGGER invoice_lines_frozen_delete AFTER DELETE ON invoice_lines
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tally_refuse_frozen_children();
CREATE TRIGGER invoice_credits_frozen_insert AFTER INSERT ON invoice_credits
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tally_refuse_frozen_children();
CREATE TRIGGER invoice_credits_frozen_update AFTER UPDATE ON invoice_credits
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tally_refuse_frozen_children();
CREATE TRIGGER invoice_credits_frozen_delete AFTER DELETE ON invoice_credits
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tally_refuse_frozen_children();
