ALTER TABLE tenants DROP COLUMN erasure_requested_at_us;
