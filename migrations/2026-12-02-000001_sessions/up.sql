-- Browser sessions (the wallet at /app; the POS page and the console reuse them) and the
-- one-time sign-in links that start them. Only keyed hashes of their secrets are stored: a
-- database leak hands out neither a usable link nor a usable session cookie.

CREATE TABLE sign_in_links (
    secret_hash    BYTEA PRIMARY KEY CHECK (length(secret_hash) = 32),
    role           TEXT NOT NULL CHECK (role IN ('cardholder', 'terminal', 'admin')),
    subject        TEXT NOT NULL CHECK (length(subject) BETWEEN 1 AND 100),
    -- The subject's token version when the link was made: revoking the subject's tokens
    -- (a lost phone) makes the link useless too.
    token_version  INTEGER NOT NULL,
    created_by     TEXT NOT NULL CHECK (length(created_by) BETWEEN 1 AND 100),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at     TIMESTAMPTZ NOT NULL,
    -- Set once, when the link is redeemed: a link starts at most one session.
    used_at        TIMESTAMPTZ,
    CHECK (expires_at > created_at)
);
-- Expired links are deleted when new ones are made.
CREATE INDEX sign_in_links_by_expiry ON sign_in_links (expires_at);

CREATE TABLE sessions (
    id_hash        BYTEA PRIMARY KEY CHECK (length(id_hash) = 32),
    role           TEXT NOT NULL CHECK (role IN ('cardholder', 'terminal', 'admin')),
    subject        TEXT NOT NULL CHECK (length(subject) BETWEEN 1 AND 100),
    -- The subject's token version at sign-in; a session of an older version is dead.
    token_version  INTEGER NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at     TIMESTAMPTZ NOT NULL,
    -- Sign-out, revocation of the subject's tokens, or too many sessions of one subject.
    revoked_at     TIMESTAMPTZ,
    CHECK (expires_at > created_at)
);
CREATE INDEX sessions_live_by_subject ON sessions (role, subject, created_at) WHERE revoked_at IS NULL;
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
