-- Failed tasks wait before they are offered again (exponential backoff),
-- and a system may report that it holds nothing for the person, which is
-- not the same as acting on zero records.
ALTER TABLE subject_tasks ADD COLUMN next_attempt_at_us BIGINT;
ALTER TABLE subject_tasks ADD COLUMN no_data_held BOOLEAN NOT NULL DEFAULT FALSE;
