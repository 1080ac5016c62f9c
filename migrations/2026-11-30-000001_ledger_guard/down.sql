DROP TABLE operator_actions;
DROP TRIGGER postings_append_only ON postings;
DROP FUNCTION postings_are_append_only();
DROP TRIGGER postings_balance_per_entry ON postings;
DROP FUNCTION journal_entries_must_balance();
