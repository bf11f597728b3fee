-- Why a request was closed without completion: the controller's reason for
-- a cancellation or rejection, and the legal ground of a rejection.
ALTER TABLE subject_requests ADD COLUMN close_reason TEXT;
ALTER TABLE subject_requests ADD COLUMN rejection_ground TEXT;
