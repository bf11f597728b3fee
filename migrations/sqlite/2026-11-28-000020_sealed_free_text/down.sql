-- The version before this one reads only the clear columns: sealed text is
-- replaced by a marker rather than lost silently. The text itself is lost
-- by a downgrade (keep a backup taken before it if it may be needed).
DROP INDEX subject_requests_clear_reasons;
DROP INDEX subject_tasks_clear_error;
DROP INDEX screening_parties_clear;
DROP INDEX breaches_clear_nature;
DROP INDEX breaches_clear_contact_point;
-- (Whether a request had a close or an extension reason shows in its
-- status and its `extended` flag.)
UPDATE subject_requests SET close_reason = '[sealed, not readable by this version]'
  WHERE reasons_sealed IS NOT NULL AND status IN ('cancelled', 'rejected')
    AND (close_reason IS NULL OR close_reason = '');
UPDATE subject_requests SET extension_reason = '[sealed, not readable by this version]'
  WHERE reasons_sealed IS NOT NULL AND extended
    AND (extension_reason IS NULL OR extension_reason = '');
UPDATE subject_tasks SET error = '[sealed, not readable by this version]'
  WHERE error_sealed IS NOT NULL AND (error IS NULL OR error = '');
UPDATE screening_parties SET name = '[sealed, not readable by this version]', aliases = '[]'
  WHERE sealed IS NOT NULL AND name = '';
UPDATE breaches SET nature = '[sealed, not readable by this version]'
  WHERE nature_sealed IS NOT NULL AND nature = '';
UPDATE breaches SET contact_point = '[sealed, not readable by this version]'
  WHERE contact_point_sealed IS NOT NULL AND contact_point = '';
ALTER TABLE subject_requests DROP COLUMN reasons_sealed;
ALTER TABLE subject_requests DROP COLUMN reasons_key_id;
ALTER TABLE subject_tasks DROP COLUMN error_sealed;
ALTER TABLE subject_tasks DROP COLUMN error_key_id;
ALTER TABLE screening_parties DROP COLUMN sealed;
ALTER TABLE screening_parties DROP COLUMN key_id;
ALTER TABLE breaches DROP COLUMN nature_sealed;
ALTER TABLE breaches DROP COLUMN nature_key_id;
ALTER TABLE breaches DROP COLUMN contact_point_sealed;
ALTER TABLE breaches DROP COLUMN contact_point_key_id;
