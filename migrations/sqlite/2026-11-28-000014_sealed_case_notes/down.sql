-- The version before this one reads `note` as clear text: sealed notes are
-- replaced by a marker rather than shown as ciphertext. Their text is lost
-- by a downgrade (keep a backup taken before it if it may be needed).
UPDATE screening_cases SET note = '[sealed note, not readable by this version]'
  WHERE note_key_id IS NOT NULL;
ALTER TABLE screening_cases DROP COLUMN note_key_id;
