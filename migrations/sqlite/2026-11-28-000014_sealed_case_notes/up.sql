-- The analyst's resolution note on a screening case may name people: it is
-- now sealed with the identifier key ring, bound to its case. NULL marks a
-- note written before this version, which stays readable as it was.
ALTER TABLE screening_cases ADD COLUMN note_key_id TEXT;
