-- Printed (static) merchant QR codes: one per merchant (counter) and per terminal, recorded when
-- an admin prints them, so operators know which codes are out there.
CREATE TABLE static_qr_codes (
    merchant_id TEXT NOT NULL REFERENCES merchants (id),
    -- '' for a merchant-only code stuck on the counter.
    terminal_id TEXT NOT NULL DEFAULT '',
    payload     TEXT NOT NULL,
    printed_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, terminal_id)
);
