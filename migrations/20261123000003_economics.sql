-- Platform economics: each partner's revenue share and a platform markup per
-- SKU; each invoice line keeps list amount, markup, platform fee and partner
-- net so settlements need no re-rating.
ALTER TABLE providers
    ADD COLUMN platform_fee_pct NUMERIC NOT NULL DEFAULT 0
        CONSTRAINT providers_platform_fee_check CHECK (platform_fee_pct >= 0 AND platform_fee_pct <= 100);

ALTER TABLE skus
    ADD COLUMN markup_pct NUMERIC NOT NULL DEFAULT 0
        CONSTRAINT skus_markup_check CHECK (markup_pct >= 0);

ALTER TABLE invoice_lines
    ADD COLUMN kind TEXT NOT NULL DEFAULT 'usage'
        CONSTRAINT invoice_lines_kind_check CHECK (kind IN ('usage', 'recurring_fee', 'minimum_true_up')),
    ADD COLUMN list_amount NUMERIC NOT NULL DEFAULT 0,
    ADD COLUMN markup NUMERIC NOT NULL DEFAULT 0,
    ADD COLUMN platform_fee NUMERIC NOT NULL DEFAULT 0,
    ADD COLUMN partner_net NUMERIC NOT NULL DEFAULT 0;
