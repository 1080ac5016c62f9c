-- Reliability: reversals of requests never seen (a tombstone so the late request is voided),
-- compensating entries for reversals, and per-terminal failure counters for throttling.

-- A reversal can arrive for a request whose scan never reached us (or has not yet): it is
-- recorded as a `voided` row without amount, so the scan, if it comes later, finds it and is
-- answered `voided` instead of moving money.
ALTER TABLE transactions ALTER COLUMN amount DROP NOT NULL;
ALTER TABLE transactions ADD CONSTRAINT amount_known_unless_tombstone
    CHECK (amount IS NOT NULL OR state = 'voided');
ALTER TABLE transactions ADD COLUMN reversed_at TIMESTAMPTZ;

-- Failed payment-code attempts per terminal and minute: a terminal that keeps presenting
-- unknown codes is throttled (`rate_limited`), so codes cannot be enumerated.
CREATE TABLE terminal_failures (
    merchant_id TEXT NOT NULL,
    terminal_id TEXT NOT NULL,
    minute      TIMESTAMPTZ NOT NULL,
    failures    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (merchant_id, terminal_id, minute)
);
