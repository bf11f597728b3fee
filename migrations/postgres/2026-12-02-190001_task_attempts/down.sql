ALTER TABLE subject_tasks DROP COLUMN no_data_held;
ALTER TABLE subject_tasks DROP COLUMN next_attempt_at_us;
