-- Corrections of finalized invoices: a void with its reason, and credit
-- notes (whole invoice, per line, partial amounts), numbered in their own
-- gap-free series and immutable once written.

ALTER TABLE invoices
    ADD COLUMN voided_at TIMESTAMPTZ,
    ADD COLUMN void_reason TEXT;

-- A finalized invoice changes once more at most: to `void`, with when and
-- why. A voided invoice never changes again. `sealed_at` freezes too.
CREATE OR REPLACE FUNCTION tally_refuse_finalized_invoice_change() RETURNS trigger
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
        NEW.statement_version, NEW.subtotal, NEW.credits_total, NEW.total, NEW.finalized_at,
        NEW.sealed_at)
       IS DISTINCT FROM
       (OLD.account_id, OLD.period_start, OLD.period_end, OLD.currency, OLD.number,
        OLD.statement_version, OLD.subtotal, OLD.credits_total, OLD.total, OLD.finalized_at,
        OLD.sealed_at)
       OR NOT (
           (NEW.status = OLD.status
                AND NEW.voided_at IS NOT DISTINCT FROM OLD.voided_at
                AND NEW.void_reason IS NOT DISTINCT FROM OLD.void_reason)
           OR (OLD.status = 'finalized' AND NEW.status = 'void'
                AND NEW.voided_at IS NOT NULL AND NEW.void_reason IS NOT NULL)
       ) THEN
        RAISE EXCEPTION 'invoice % is %: it is frozen', OLD.id, OLD.status
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TABLE credit_notes (
    id          UUID PRIMARY KEY,
    number      TEXT NOT NULL CONSTRAINT credit_notes_number_unique UNIQUE,
    invoice_id  UUID NOT NULL REFERENCES invoices (id),
    account_id  TEXT NOT NULL REFERENCES accounts (id),
    currency    TEXT NOT NULL,
    reason      TEXT NOT NULL,
    total       NUMERIC NOT NULL CONSTRAINT credit_notes_total_positive CHECK (total > 0),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX credit_notes_invoice_idx ON credit_notes (invoice_id);

-- Each line credits part of one invoice line; the credit is split between
-- platform and partner in the invoice line's proportion, so settlements
-- give back the partner's share.
CREATE TABLE credit_note_lines (
    credit_note_id  UUID NOT NULL REFERENCES credit_notes (id),
    position        INT NOT NULL,
    invoice_id      UUID NOT NULL,
    line_position   INT NOT NULL,
    provider_id     TEXT NOT NULL,
    sku_id          TEXT NOT NULL,
    description     TEXT NOT NULL,
    amount          NUMERIC NOT NULL CONSTRAINT credit_note_lines_amount_positive CHECK (amount > 0),
    platform_part   NUMERIC NOT NULL,
    partner_part    NUMERIC NOT NULL,
    PRIMARY KEY (credit_note_id, position),
    CONSTRAINT credit_note_lines_split CHECK (platform_part + partner_part = amount),
    FOREIGN KEY (invoice_id, line_position) REFERENCES invoice_lines (invoice_id, position)
);
CREATE INDEX credit_note_lines_line_idx ON credit_note_lines (invoice_id, line_position);

CREATE FUNCTION tally_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rows are immutable', TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END $$;

CREATE TRIGGER credit_notes_immutable BEFORE UPDATE OR DELETE ON credit_notes
    FOR EACH ROW EXECUTE FUNCTION tally_refuse_change();
CREATE TRIGGER credit_note_lines_immutable BEFORE UPDATE OR DELETE ON credit_note_lines
    FOR EACH ROW EXECUTE FUNCTION tally_refuse_change();
