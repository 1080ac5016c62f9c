-- The ledger defends itself: whatever code writes postings, a transaction whose postings for a
-- journal entry do not sum to zero cannot commit, and postings, once written, never change.
-- The application builds only balanced entries (domain::ledger::JournalEntry) and writes them
-- through one function (db::journal::post); this is the same rule, kept by the database.

-- Checked at the end of every INSERT statement on postings, once per statement, over the rows
-- that statement wrote: for each journal entry among them, the card leg must be there and the
-- legs must sum to zero. Every entry has exactly one card leg (every kind of money movement
-- touches a card, and postings are unique per entry and leg), so an entry's postings are all
-- written by the one statement that writes its card leg and can never be added to later; with
-- postings append-only (below), an entry that balanced when written balances forever.
--
-- Why per statement and not deferred to the commit: a deferred constraint trigger runs once
-- per posting (or per entry), and in the benchmark that cost PostgreSQL about 20 us per payment
-- (5 % of the pipeline's throughput at saturation); this check runs once per batch. It is also
-- stricter: an unbalanced entry fails at once, within the statement that wrote it.
CREATE FUNCTION journal_entries_must_balance() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    bad RECORD;
BEGIN
    SELECT entry_id, SUM(amount) AS total, bool_or(leg = 'card') AS has_card INTO bad
    FROM new_rows
    GROUP BY entry_id
    HAVING SUM(amount) <> 0 OR NOT bool_or(leg = 'card')
    LIMIT 1;
    IF FOUND THEN
        IF NOT bad.has_card THEN
            RAISE EXCEPTION 'postings of journal entry % must be written together with its card leg, in one statement', bad.entry_id
                USING ERRCODE = 'check_violation';
        END IF;
        RAISE EXCEPTION 'journal entry % does not balance: its postings sum to %', bad.entry_id, bad.total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER postings_balance_per_entry
    AFTER INSERT ON postings
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION journal_entries_must_balance();

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
