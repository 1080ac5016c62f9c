-- campuspay schema: cardholders and cards, merchants and terminals, payment codes, fee rules,
-- transactions (交易流水) and a double-entry ledger. Money is NUMERIC(18,2).

-- Ledger accounts. Every balance is the sum of the account's postings (checked by
-- `campuspay admin verify`); a card balance can never go below zero, enforced here and not
-- only in code.
CREATE TABLE accounts (
    id          BIGSERIAL PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('card', 'merchant', 'fee_income', 'topup_clearing')),
    owner       TEXT NOT NULL,
    balance     NUMERIC(18,2) NOT NULL DEFAULT 0,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (kind, owner),
    CONSTRAINT card_balance_never_negative CHECK (kind <> 'card' OR balance >= 0),
    CONSTRAINT merchant_balance_never_negative CHECK (kind <> 'merchant' OR balance >= 0)
);

-- The school's own accounts exist from the start.
INSERT INTO accounts (kind, owner) VALUES ('fee_income', 'school'), ('topup_clearing', 'school');

CREATE TABLE cardholders (
    user_id     TEXT PRIMARY KEY CHECK (user_id ~ '^[A-Za-z0-9_-]{1,32}$'),
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    identity    TEXT NOT NULL CHECK (identity IN ('student', 'staff', 'temporary', 'external')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE cards (
    id              BIGSERIAL PRIMARY KEY,
    user_id         TEXT NOT NULL UNIQUE REFERENCES cardholders (user_id),
    account_id      BIGINT NOT NULL UNIQUE REFERENCES accounts (id),
    status          TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'frozen')),
    -- NULL: the identity's default applies.
    per_txn_limit   NUMERIC(18,2) CHECK (per_txn_limit > 0),
    daily_limit     NUMERIC(18,2) CHECK (daily_limit > 0),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE merchants (
    id          TEXT PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{1,32}$'),
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    account_id  BIGINT NOT NULL UNIQUE REFERENCES accounts (id),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE terminals (
    merchant_id TEXT NOT NULL REFERENCES merchants (id),
    id          TEXT NOT NULL CHECK (id ~ '^[A-Za-z0-9_-]{1,32}$'),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, id)
);

-- One-time payment codes, stored only as HMAC-SHA256(code_key, code).
CREATE TABLE payment_codes (
    code_hash       BYTEA PRIMARY KEY CHECK (length(code_hash) = 32),
    card_id         BIGINT NOT NULL REFERENCES cards (id),
    batch_id        UUID NOT NULL,
    issued_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at      TIMESTAMPTZ NOT NULL,
    state           TEXT NOT NULL DEFAULT 'unused'
                    CHECK (state IN ('unused', 'used', 'superseded', 'revoked')),
    used_at         TIMESTAMPTZ,
    transaction_id  UUID
);
CREATE INDEX payment_codes_unused_by_card ON payment_codes (card_id) WHERE state = 'unused';

-- 搭伙费 rules: the newest effective rule for (identity, merchant) wins over the newest for
-- (identity, any merchant). No rule means no fee.
CREATE TABLE fee_rules (
    id              BIGSERIAL PRIMARY KEY,
    identity        TEXT NOT NULL CHECK (identity IN ('student', 'staff', 'temporary', 'external')),
    merchant_id     TEXT REFERENCES merchants (id),
    rate            NUMERIC(6,4) NOT NULL CHECK (rate >= 0 AND rate <= 1),
    effective_from  TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX fee_rules_lookup ON fee_rules (identity, merchant_id, effective_from DESC);

-- 交易流水. `request_scope` names who created `request_id` ('pos:<merchant>:<terminal>' or
-- 'user:<user>'): a retry with the same key finds the same row and never moves money twice.
CREATE TABLE transactions (
    id              UUID PRIMARY KEY,
    mode            TEXT NOT NULL CHECK (mode IN ('reverse_scan', 'forward_scan')),
    request_scope   TEXT NOT NULL,
    request_id      UUID NOT NULL,
    merchant_id     TEXT NOT NULL REFERENCES merchants (id),
    terminal_id     TEXT NOT NULL,
    card_id         BIGINT REFERENCES cards (id),
    user_id         TEXT,
    amount          NUMERIC(18,2) NOT NULL CHECK (amount > 0),
    fee             NUMERIC(18,2) CHECK (fee >= 0),
    fee_rule_id     BIGINT REFERENCES fee_rules (id),
    state           TEXT NOT NULL DEFAULT 'created'
                    CHECK (state IN ('created', 'approved', 'declined', 'reversed', 'voided')),
    reason          TEXT,
    balance_after   NUMERIC(18,2),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    processed_at    TIMESTAMPTZ,
    UNIQUE (request_scope, request_id),
    CONSTRAINT final_states_have_time CHECK (state = 'created' OR processed_at IS NOT NULL),
    CONSTRAINT approved_has_no_reason CHECK (state <> 'approved' OR reason IS NULL)
);
CREATE INDEX transactions_by_card ON transactions (card_id, created_at);
CREATE INDEX transactions_open ON transactions (created_at) WHERE state = 'created';

-- A journal entry groups postings that sum to zero: a payment, a top-up, a reversal.
CREATE TABLE journal_entries (
    id              UUID PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('payment', 'topup', 'reversal', 'refund', 'subsidy')),
    transaction_id  UUID REFERENCES transactions (id),
    memo            TEXT NOT NULL DEFAULT '',
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE postings (
    id          BIGSERIAL PRIMARY KEY,
    entry_id    UUID NOT NULL REFERENCES journal_entries (id),
    leg         TEXT NOT NULL CHECK (leg IN ('card', 'merchant', 'fee', 'clearing')),
    account_id  BIGINT NOT NULL REFERENCES accounts (id),
    amount      NUMERIC(18,2) NOT NULL CHECK (amount <> 0),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (entry_id, leg)
);
CREATE INDEX postings_by_account ON postings (account_id);
