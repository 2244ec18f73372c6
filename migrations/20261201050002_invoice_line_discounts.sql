-- Contracts (issue 18) on the invoice: each line keeps what the account's
-- contract took off it and who funds that (tally_domain::contract::pricing),
-- and a commitment's true-up is a line of its own kind.
ALTER TABLE invoice_lines
    ADD COLUMN discount NUMERIC NOT NULL DEFAULT 0,
    ADD COLUMN discount_funded_by TEXT
        CONSTRAINT invoice_lines_discount_funded_by_check CHECK (discount_funded_by IN ('platform', 'partner')),
    DROP CONSTRAINT invoice_lines_kind_check,
    ADD CONSTRAINT invoice_lines_kind_check
        CHECK (kind IN ('usage', 'recurring_fee', 'minimum_true_up', 'plan_fee', 'allowance', 'commitment_true_up'));
