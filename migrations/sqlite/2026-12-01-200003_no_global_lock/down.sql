DROP INDEX decision_changes_unordered;
DROP INDEX decision_changes_ord;
ALTER TABLE decision_changes DROP COLUMN ord;
