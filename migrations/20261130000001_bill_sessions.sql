-- Bill-page sessions: the cookie holds a random id, stored here hashed with
-- the customer key that signed in. A session ends at sign-out, at expiry,
-- or as soon as its key is revoked (checked on every request).
CREATE TABLE bill_sessions (
    id_hash     BYTEA PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts (id),
    api_key_id  UUID NOT NULL REFERENCES api_keys (id),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX bill_sessions_expires_at ON bill_sessions (expires_at);
