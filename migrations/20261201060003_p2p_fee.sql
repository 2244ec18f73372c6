-- The platform fee on provider-to-provider usage (issue 17), per provider:
-- its share, in percent, of what this provider bills accounts that other
-- providers own. NULL: the same as on consumer usage (platform_fee_pct).
ALTER TABLE providers
    ADD COLUMN p2p_fee_pct NUMERIC
        CONSTRAINT providers_p2p_fee_check CHECK (p2p_fee_pct >= 0 AND p2p_fee_pct <= 100);
