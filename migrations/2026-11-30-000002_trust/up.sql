-- The trust boundary: revocable credentials, PIN lockout, subsidy rows keyed by batch.

-- Every token a terminal or cardholder holds carries the version current when it was issued;
-- bumping the version here revokes all older tokens at once (rotation, removal, a lost phone).
ALTER TABLE terminals ADD COLUMN token_version INTEGER NOT NULL DEFAULT 1 CHECK (token_version > 0);
-- The terminal's own RabbitMQ user (created by `admin terminal add`, deleted by `remove`).
ALTER TABLE terminals ADD COLUMN broker_user TEXT;
-- A removed terminal is kept for the history of its payments but can do nothing any more.
ALTER TABLE terminals ADD COLUMN removed_at TIMESTAMPTZ;
ALTER TABLE cardholders ADD COLUMN token_version INTEGER NOT NULL DEFAULT 1 CHECK (token_version > 0);

-- PIN lockout: wrong PINs in a row, and until when the PIN is locked after too many. Counted
-- per card on every path that takes a PIN; the lock grows each time it is hit again.
ALTER TABLE cards ADD COLUMN pin_failures INTEGER NOT NULL DEFAULT 0 CHECK (pin_failures >= 0);
ALTER TABLE cards ADD COLUMN pin_locks INTEGER NOT NULL DEFAULT 0 CHECK (pin_locks >= 0);
ALTER TABLE cards ADD COLUMN pin_locked_until TIMESTAMPTZ;

-- Subsidy rows: one credit per (batch, row key), the key being the file's row id or, without
-- one, the cardholder. A re-import, edited or reordered, finds each row's earlier credit here.
CREATE TABLE subsidy_credits (
    batch       TEXT NOT NULL CHECK (length(batch) BETWEEN 1 AND 100),
    row_key     TEXT NOT NULL CHECK (length(row_key) BETWEEN 1 AND 64),
    user_id     TEXT NOT NULL REFERENCES cardholders (user_id),
    amount      NUMERIC(18,2) NOT NULL CHECK (amount > 0),
    entry_id    UUID NOT NULL UNIQUE REFERENCES journal_entries (id),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (batch, row_key)
);
