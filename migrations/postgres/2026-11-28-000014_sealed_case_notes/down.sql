ALTER TABLE screening_cases DROP COLUMN note_key_id;
