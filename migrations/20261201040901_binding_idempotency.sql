-- A binding's creation may carry the caller's Idempotency-Key (issue 16):
-- a retried request with the same key on the same account gets the binding
-- the first one created instead of a second one.
ALTER TABLE bindings ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX bindings_idempotency_key_idx ON bindings (account_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
