-- Idempotency keys are scoped by origin: a platform forward, a tenant's
-- submission and proctor's own contract-end erasure each have their own key
-- space, and proctor's own keys move under the reserved `proctor:` prefix.
UPDATE subject_requests SET idempotency_key = 'proctor:contract-end'
 WHERE origin = 'contract_end';
DROP INDEX subject_requests_idempotency;
CREATE UNIQUE INDEX subject_requests_idempotency
    ON subject_requests (tenant_id, origin, idempotency_key);
