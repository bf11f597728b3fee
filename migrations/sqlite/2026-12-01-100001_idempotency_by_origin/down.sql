-- Back to one key space per tenant. Fails if a forward and a submission of
-- one tenant share a key, which the old index could not hold.
DROP INDEX subject_requests_idempotency;
UPDATE subject_requests SET idempotency_key = 'contract-end'
 WHERE origin = 'contract_end';
CREATE UNIQUE INDEX subject_requests_idempotency
    ON subject_requests (tenant_id, idempotency_key);
