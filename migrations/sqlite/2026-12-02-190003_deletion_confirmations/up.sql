-- Sub-processors' confirmations that a terminated tenant's data is gone,
-- recorded by compliance; the deletion certificate lists them.
CREATE TABLE subject_deletion_confirmations (
    tenant_id        TEXT NOT NULL,
    sub_processor_id TEXT NOT NULL,
    confirmed_at_us  BIGINT NOT NULL,
    reference        TEXT NOT NULL,
    recorded_by      TEXT NOT NULL,
    recorded_at_us   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, sub_processor_id)
);
