-- The breach register: one row per breach (lists as JSON text), and the
-- tenants each concerns.

CREATE TABLE breaches (
    seq                         BIGINT PRIMARY KEY,
    id                          TEXT NOT NULL UNIQUE,
    nature                      TEXT NOT NULL,
    categories                  TEXT NOT NULL,
    approx_subjects             BIGINT NOT NULL,
    approx_records              BIGINT NOT NULL,
    likely_consequences         TEXT NOT NULL,
    measures                    TEXT NOT NULL,
    contact_point               TEXT NOT NULL,
    systems                     TEXT NOT NULL,
    became_aware_at_us          BIGINT NOT NULL,
    authority_deadline_us       BIGINT NOT NULL,
    status                      TEXT NOT NULL,
    notified_at_us              BIGINT,
    reference                   TEXT NOT NULL,
    not_required_justification  TEXT NOT NULL,
    delay_reasons               TEXT NOT NULL,
    created_at_us               BIGINT NOT NULL,
    updated_at_us               BIGINT NOT NULL
);
CREATE INDEX breaches_open_deadline ON breaches (status, authority_deadline_us);

CREATE TABLE breach_tenants (
    breach_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    PRIMARY KEY (breach_id, tenant_id)
);
CREATE INDEX breach_tenants_tenant ON breach_tenants (tenant_id);
