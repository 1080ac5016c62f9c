-- Operating the system: limits by identity (overridable per card), a PIN for payments above the
-- password-free amount, and refunds.

CREATE TABLE identity_limits (
    identity            TEXT PRIMARY KEY CHECK (identity IN ('student', 'staff', 'temporary', 'external')),
    per_txn_limit       NUMERIC(18,2) NOT NULL CHECK (per_txn_limit > 0),
    daily_limit         NUMERIC(18,2) NOT NULL CHECK (daily_limit > 0),
    -- Above this a forward-scan payment needs the PIN; a reverse scan is declined pin_required.
    password_free_limit NUMERIC(18,2) NOT NULL CHECK (password_free_limit > 0)
);
INSERT INTO identity_limits VALUES
    ('student',   200.00,  500.00,  50.00),
    ('staff',     500.00, 1000.00, 100.00),
    ('temporary', 200.00,  300.00,  50.00),
    ('external',  200.00,  300.00,  50.00);

ALTER TABLE cards ADD COLUMN password_free_limit NUMERIC(18,2) CHECK (password_free_limit > 0);
-- HMAC-SHA256(code_key, user_id || ':' || pin): never the PIN itself.
ALTER TABLE cards ADD COLUMN pin_hash BYTEA CHECK (pin_hash IS NULL OR length(pin_hash) = 32);

-- Refunds of approved payments, full or partial; the fee is refunded in proportion. The id is
-- the caller's idempotency key (and the id of the journal entry).
CREATE TABLE refunds (
    id              UUID PRIMARY KEY,
    transaction_id  UUID NOT NULL REFERENCES transactions (id),
    amount          NUMERIC(18,2) NOT NULL CHECK (amount > 0),
    fee             NUMERIC(18,2) NOT NULL CHECK (fee >= 0),
    reason          TEXT NOT NULL DEFAULT '',
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX refunds_by_transaction ON refunds (transaction_id);
CREATE INDEX transactions_by_day ON transactions (processed_at) WHERE state IN ('approved', 'reversed');
