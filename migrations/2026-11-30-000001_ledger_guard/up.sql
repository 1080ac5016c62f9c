-- The ledger defends itself: whatever code writes postings, a transaction whose postings for a
-- journal entry do not sum to zero cannot commit, and postings, once written, never change.
-- The application builds only balanced entries (domain::ledger::JournalEntry) and writes them
-- through one function (db::journal::post); this is the same rule, kept by the database.

-- Checked at commit (deferred), once per inserted posting: an entry's legs may be inserted by
-- several statements of one transaction, but by the commit they must balance.
CREATE FUNCTION journal_entry_must_balance() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    total NUMERIC;
BEGIN
    SELECT COALESCE(SUM(amount), 0) INTO total FROM postings WHERE entry_id = NEW.entry_id;
    IF total <> 0 THEN
        RAISE EXCEPTION 'journal entry % does not balance: its postings sum to %', NEW.entry_id, total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER postings_balance_per_entry
    AFTER INSERT ON postings
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION journal_entry_must_balance();

-- Append-only: a correction is a new, compensating entry, never an edited or deleted posting.
CREATE FUNCTION postings_are_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'postings are append-only: post a compensating entry instead'
        USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER postings_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON postings
    FOR EACH STATEMENT EXECUTE FUNCTION postings_are_append_only();

-- The operators' trail: who changed what in the back office (CLI, /admin/v1, the console).
CREATE TABLE operator_actions (
    id          BIGSERIAL PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    operator    TEXT NOT NULL CHECK (length(operator) BETWEEN 1 AND 100),
    action      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    -- A JSON object with the action's parameters (never a PIN or a payment code).
    detail      TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX operator_actions_by_subject ON operator_actions (subject, id);
