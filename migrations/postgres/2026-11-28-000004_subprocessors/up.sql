-- The sub-processor registry: sub-processors (lists as JSON text), their
-- change notices, each tenant's answer to a notice, and each tenant's
-- authorisation-mode history. Status and authorisation are computed from
-- these rows at the time asked; nothing here is flipped by a timer.

CREATE TABLE sub_processors (
    seq                 BIGINT PRIMARY KEY,
    id                  TEXT NOT NULL UNIQUE,
    -- lower-cased legal name and country: one registration per company.
    name_key            TEXT NOT NULL UNIQUE,
    legal_name          TEXT NOT NULL,
    country             TEXT NOT NULL,
    services            TEXT NOT NULL,
    categories          TEXT NOT NULL,
    purposes            TEXT NOT NULL,
    transfer_mechanism  TEXT NOT NULL,
    parent_id           TEXT,
    dpa_signed_at_us    BIGINT,
    nda_signed_at_us    BIGINT,
    created_at_us       BIGINT NOT NULL,
    -- The screening hook: 'pending', 'clear' or 'confirmed', and when.
    screening           TEXT NOT NULL DEFAULT 'pending',
    screened_at_us      BIGINT
);
CREATE INDEX sub_processors_parent ON sub_processors (parent_id);

CREATE TABLE sub_processor_notices (
    seq                     BIGINT PRIMARY KEY,
    id                      TEXT NOT NULL UNIQUE,
    sub_processor_id        TEXT NOT NULL,
    kind                    TEXT NOT NULL,
    categories              TEXT NOT NULL,
    purposes                TEXT NOT NULL,
    effective_at_us         BIGINT NOT NULL,
    objection_deadline_us   BIGINT NOT NULL,
    created_at_us           BIGINT NOT NULL,
    author                  TEXT NOT NULL
);
CREATE INDEX sub_processor_notices_sp ON sub_processor_notices (sub_processor_id);

-- One row per (notice, tenant) the tenant was notified of or answered.
CREATE TABLE sub_processor_notice_tenants (
    notice_id         TEXT NOT NULL,
    tenant_id         TEXT NOT NULL,
    notified          BOOLEAN NOT NULL,
    approved_at_us    BIGINT,
    objected_at_us    BIGINT,
    objection_reason  TEXT,
    PRIMARY KEY (notice_id, tenant_id)
);
CREATE INDEX sub_processor_notice_tenants_tenant ON sub_processor_notice_tenants (tenant_id);

-- Mode history: the mode in force at a notice's objection deadline decides.
CREATE TABLE sub_processor_modes (
    seq        BIGINT PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    mode       TEXT NOT NULL,
    since_us   BIGINT NOT NULL
);
CREATE INDEX sub_processor_modes_tenant ON sub_processor_modes (tenant_id, seq);
