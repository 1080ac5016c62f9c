DROP TABLE terminal_failures;
ALTER TABLE transactions DROP COLUMN reversed_at;
ALTER TABLE transactions DROP CONSTRAINT amount_known_unless_tombstone;
DELETE FROM transactions WHERE amount IS NULL;
ALTER TABLE transactions ALTER COLUMN amount SET NOT NULL;
