-- The decision change log is ordered after commit by the sequencer
-- (`ord`), as on PostgreSQL; SQLite's one writer needs no sequences.
ALTER TABLE decision_changes ADD COLUMN ord BIGINT;
UPDATE decision_changes SET ord = seq;
CREATE UNIQUE INDEX decision_changes_ord ON decision_changes (ord);
CREATE INDEX decision_changes_unordered ON decision_changes (seq) WHERE ord IS NULL;
