ALTER TABLE subject_export_chunks DROP COLUMN key_id;
