-- Forward scan (正扫): dynamic merchant QR codes issued to a POS, and the phone's orders.

-- A dynamic code is single-use and expires. The POS's request_id makes issuing idempotent; the
-- one-time reference printed in the payload (tag 62/05) finds it again when a phone scans it.
CREATE TABLE dynamic_qr_codes (
    reference       TEXT PRIMARY KEY CHECK (reference ~ '^[A-Za-z0-9]{1,25}$'),
    request_scope   TEXT NOT NULL,
    request_id      UUID NOT NULL,
    merchant_id     TEXT NOT NULL REFERENCES merchants (id),
    terminal_id     TEXT NOT NULL,
    amount          NUMERIC(18,2) NOT NULL CHECK (amount > 0),
    payload         TEXT NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL,
    -- The order that claimed it: set once, by the first phone that scanned it.
    order_id        UUID,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (request_scope, request_id),
    FOREIGN KEY (merchant_id, terminal_id) REFERENCES terminals (merchant_id, id)
);

-- A phone's order: created when the QR is scanned, submitted when the cardholder confirms.
-- Its id is also the id of the transaction it becomes.
CREATE TABLE orders (
    id                  UUID PRIMARY KEY,
    user_id             TEXT NOT NULL REFERENCES cardholders (user_id),
    request_id          UUID NOT NULL,
    qr_kind             TEXT NOT NULL CHECK (qr_kind IN ('static_merchant', 'static_terminal', 'dynamic')),
    merchant_id         TEXT NOT NULL REFERENCES merchants (id),
    terminal_id         TEXT NOT NULL,
    amount              NUMERIC(18,2) CHECK (amount > 0),
    dynamic_reference   TEXT REFERENCES dynamic_qr_codes (reference),
    state               TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'submitted')),
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    submitted_at        TIMESTAMPTZ,
    UNIQUE (user_id, request_id),
    CONSTRAINT submitted_has_amount CHECK (state = 'open' OR amount IS NOT NULL)
);
