DROP TABLE subsidy_credits;
ALTER TABLE cards DROP COLUMN pin_locked_until, DROP COLUMN pin_locks, DROP COLUMN pin_failures;
ALTER TABLE cardholders DROP COLUMN token_version;
ALTER TABLE terminals DROP COLUMN removed_at, DROP COLUMN broker_user, DROP COLUMN token_version;
