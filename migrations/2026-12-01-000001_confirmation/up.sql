-- Confirming a large reverse-scan payment on the phone (WeChat Pay micropay's USERPAYING):
-- settlement parks a reverse scan above the card's password-free amount in the state
-- `awaiting_confirmation` until its cardholder confirms it with the PIN (back to `created`,
-- settled again with the PIN given), declines it, or lets the deadline pass.
--
-- Columns of the transaction rather than a table of their own: the state and its deadline sit
-- in one row, so CHECKs tie them together; settlement, which already locks that row, reads the
-- confirmation with it at no extra statement on its hot path; and nullable columns without a
-- default are added without rewriting the table.
ALTER TABLE transactions DROP CONSTRAINT transactions_state_check;
ALTER TABLE transactions ADD CONSTRAINT transactions_state_check CHECK (state IN
    ('created', 'awaiting_confirmation', 'approved', 'declined', 'reversed', 'voided'));

-- Unconfirmed by then, the payment is declined `confirmation_timeout`.
ALTER TABLE transactions ADD COLUMN confirm_deadline TIMESTAMPTZ;
-- When the cardholder gave the right PIN for it: settlement counts the PIN as given only then,
-- whatever a stage message says.
ALTER TABLE transactions ADD COLUMN confirmed_at TIMESTAMPTZ;
-- When the cardholder declined it: settlement then declines it `user_declined`.
ALTER TABLE transactions ADD COLUMN confirm_declined_at TIMESTAMPTZ;
-- When it was last handed back to settlement (by the platform or the confirmation sweeper). The
-- sweeper hands it again only some time later: a crash between a commit and its publish loses
-- nothing, and a busy settlement queue is not flooded with copies.
ALTER TABLE transactions ADD COLUMN confirm_sent_at TIMESTAMPTZ;

ALTER TABLE transactions ADD CONSTRAINT awaiting_has_deadline
    CHECK (state <> 'awaiting_confirmation' OR confirm_deadline IS NOT NULL);
-- Confirmed or declined, never both, and only what was asked.
ALTER TABLE transactions ADD CONSTRAINT confirmed_or_declined CHECK (
    (confirmed_at IS NULL OR confirm_declined_at IS NULL)
    AND (confirm_deadline IS NOT NULL OR (confirmed_at IS NULL AND confirm_declined_at IS NULL)));

-- The sweeper's rows: confirmations still open (waiting, or confirmed and not yet settled).
-- A handful at any time, whatever the size of the table.
CREATE INDEX transactions_confirming ON transactions (confirm_deadline)
    WHERE state IN ('awaiting_confirmation', 'created') AND confirm_deadline IS NOT NULL;
