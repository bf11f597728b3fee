ALTER TABLE subject_requests DROP COLUMN rejection_ground;
ALTER TABLE subject_requests DROP COLUMN close_reason;
