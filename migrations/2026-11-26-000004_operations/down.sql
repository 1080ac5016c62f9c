DROP INDEX transactions_by_day;
DROP TABLE refunds;
ALTER TABLE cards DROP COLUMN pin_hash;
ALTER TABLE cards DROP COLUMN password_free_limit;
DROP TABLE identity_limits;
