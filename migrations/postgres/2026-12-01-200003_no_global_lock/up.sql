-- Commands take no lock shared by the cluster: row numbers come from
-- sequences (concurrent commands draw distinct numbers), what must be in
-- one order per key is locked per key, and the decision change log is
-- ordered after commit by the sequencer (`ord`), so a follower reading
-- `ord > last` never misses an entry that committed late.

CREATE SEQUENCE envelopes_seq;
SELECT setval('envelopes_seq', COALESCE((SELECT MAX(seq) FROM envelopes), 0) + 1, false);

CREATE SEQUENCE decision_changes_seq;
SELECT setval('decision_changes_seq', COALESCE((SELECT MAX(seq) FROM decision_changes), 0) + 1, false);

CREATE SEQUENCE sub_processors_seq;
SELECT setval('sub_processors_seq', COALESCE((SELECT MAX(seq) FROM sub_processors), 0) + 1, false);

CREATE SEQUENCE sub_processor_notices_seq;
SELECT setval('sub_processor_notices_seq', COALESCE((SELECT MAX(seq) FROM sub_processor_notices), 0) + 1, false);

CREATE SEQUENCE sub_processor_modes_seq;
SELECT setval('sub_processor_modes_seq', COALESCE((SELECT MAX(seq) FROM sub_processor_modes), 0) + 1, false);

CREATE SEQUENCE screening_list_versions_seq;
SELECT setval('screening_list_versions_seq', COALESCE((SELECT MAX(seq) FROM screening_list_versions), 0) + 1, false);

CREATE SEQUENCE screening_cases_seq;
SELECT setval('screening_cases_seq', COALESCE((SELECT MAX(seq) FROM screening_cases), 0) + 1, false);

CREATE SEQUENCE subject_requests_seq;
SELECT setval('subject_requests_seq', COALESCE((SELECT MAX(seq) FROM subject_requests), 0) + 1, false);

CREATE SEQUENCE subject_tasks_seq;
SELECT setval('subject_tasks_seq', COALESCE((SELECT MAX(seq) FROM subject_tasks), 0) + 1, false);

CREATE SEQUENCE subject_export_chunks_seq;
SELECT setval('subject_export_chunks_seq', COALESCE((SELECT MAX(seq) FROM subject_export_chunks), 0) + 1, false);

CREATE SEQUENCE subject_flags_change_seq;
SELECT setval('subject_flags_change_seq', COALESCE((SELECT MAX(change_seq) FROM subject_flags), 0) + 1, false);

CREATE SEQUENCE breaches_seq;
SELECT setval('breaches_seq', COALESCE((SELECT MAX(seq) FROM breaches), 0) + 1, false);

CREATE SEQUENCE authority_requests_seq;
SELECT setval('authority_requests_seq', COALESCE((SELECT MAX(seq) FROM authority_requests), 0) + 1, false);

ALTER TABLE decision_changes ADD COLUMN ord BIGINT;
UPDATE decision_changes SET ord = seq;
CREATE UNIQUE INDEX decision_changes_ord ON decision_changes (ord);
CREATE INDEX decision_changes_unordered ON decision_changes (seq) WHERE ord IS NULL;
