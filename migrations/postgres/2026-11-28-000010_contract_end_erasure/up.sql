-- When the service itself opened the contract-end erasure request, so the
-- sweep does each tenant once.
ALTER TABLE tenants ADD COLUMN erasure_requested_at_us BIGINT;
