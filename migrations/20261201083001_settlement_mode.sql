-- Issue 17 item 4: how the platform settles with a provider that is also
-- its customer. gross (the default): its settlement is paid in full and
-- its own invoices are paid separately; net: its own invoices of the month
-- are netted against its settlement, one payment of the difference.
ALTER TABLE providers
    ADD COLUMN settlement_mode TEXT NOT NULL DEFAULT 'gross'
        CONSTRAINT providers_settlement_mode_known CHECK (settlement_mode IN ('gross', 'net'));
