-- Usage and invoice lines per bound resource (issue 16). An aggregate is
-- now per (account, period, price version, binding): '' is usage that
-- names no binding, as all usage did before; so existing rows keep their
-- meaning and their statements do not change.
ALTER TABLE usage_aggregates ADD COLUMN binding_id TEXT NOT NULL DEFAULT '';
ALTER TABLE usage_aggregates
    DROP CONSTRAINT usage_aggregates_pkey,
    ADD PRIMARY KEY (account_id, period_start, price_id, binding_id);

ALTER TABLE usage_distinct_values ADD COLUMN binding_id TEXT NOT NULL DEFAULT '';
ALTER TABLE usage_distinct_values
    DROP CONSTRAINT usage_distinct_values_pkey,
    ADD PRIMARY KEY (account_id, period_start, price_id, binding_id, value);

-- Plan fees and the usage a plan includes are invoice lines too; a line of
-- a bound resource names it (binding, the customer's name, its plan).
ALTER TABLE invoice_lines
    DROP CONSTRAINT invoice_lines_kind_check,
    ADD CONSTRAINT invoice_lines_kind_check
        CHECK (kind IN ('usage', 'recurring_fee', 'minimum_true_up', 'plan_fee', 'allowance')),
    ADD COLUMN binding_id TEXT,
    ADD COLUMN resource_name TEXT,
    ADD COLUMN resource_plan TEXT;
