DROP INDEX transactions_confirming;
-- The earlier code declined these payments `pin_required` and knows none of the new reasons.
UPDATE transactions SET state = 'declined', reason = 'pin_required', processed_at = now()
    WHERE state = 'awaiting_confirmation';
UPDATE transactions SET reason = 'pin_required'
    WHERE reason IN ('user_confirming', 'confirmation_timeout', 'user_declined');
ALTER TABLE transactions DROP CONSTRAINT confirmed_or_declined;
ALTER TABLE transactions DROP CONSTRAINT awaiting_has_deadline;
ALTER TABLE transactions DROP COLUMN confirm_sent_at, DROP COLUMN confirm_declined_at,
    DROP COLUMN confirmed_at, DROP COLUMN confirm_deadline;
ALTER TABLE transactions DROP CONSTRAINT transactions_state_check;
ALTER TABLE transactions ADD CONSTRAINT transactions_state_check
    CHECK (state IN ('created', 'approved', 'declined', 'reversed', 'voided'));
