-- Data-subject requests: the requests, the keyed-hash references of their
-- subjects, the platform systems and their fulfilment tasks, export chunks,
-- per-subject flags that CheckProcessing reads, per-tenant settings.
-- Subject identifiers are never stored in clear: subject_sealed holds the
-- AEAD ciphertext (key id beside it) and is set to NULL when a request closes.

CREATE TABLE subject_requests (
    seq                  BIGINT PRIMARY KEY,
    id                   TEXT NOT NULL UNIQUE,
    tenant_id            TEXT NOT NULL,
    origin               TEXT NOT NULL,
    request_type         TEXT NOT NULL,
    status               TEXT NOT NULL,
    regime               TEXT NOT NULL,
    channel              TEXT NOT NULL,
    idempotency_key      TEXT NOT NULL,
    body_digest          TEXT NOT NULL,
    subject_ref          TEXT,
    subject_sealed       TEXT,
    subject_key_id       TEXT,
    categories           TEXT NOT NULL,
    received_at_us       BIGINT NOT NULL,
    due_at_us            BIGINT NOT NULL,
    sla_due_at_us        BIGINT NOT NULL,
    extended             BOOLEAN NOT NULL DEFAULT FALSE,
    extension_reason     TEXT,
    receipt_issued_at_us BIGINT NOT NULL,
    receipt_signature    TEXT NOT NULL,
    receipt_key_id       TEXT NOT NULL,
    created_at_us        BIGINT NOT NULL,
    updated_at_us        BIGINT NOT NULL,
    closed_at_us         BIGINT,
    version              BIGINT NOT NULL DEFAULT 1,
    export_downloaded_at_us BIGINT,
    export_deleted_at_us BIGINT
);
CREATE UNIQUE INDEX subject_requests_idempotency ON subject_requests (tenant_id, idempotency_key);
CREATE INDEX subject_requests_tenant ON subject_requests (tenant_id, seq);
CREATE INDEX subject_requests_due ON subject_requests (status, due_at_us);

CREATE TABLE subject_request_refs (
    request_id   TEXT NOT NULL,
    tenant_id    TEXT NOT NULL,
    subject_ref  TEXT NOT NULL,
    PRIMARY KEY (request_id, subject_ref)
);
CREATE INDEX subject_request_refs_subject ON subject_request_refs (tenant_id, subject_ref);

CREATE TABLE subject_systems (
    name           TEXT PRIMARY KEY,
    categories     TEXT NOT NULL,
    registered_at_us BIGINT NOT NULL,
    updated_at_us  BIGINT NOT NULL
);

CREATE TABLE subject_tasks (
    seq              BIGINT PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    request_id       TEXT NOT NULL,
    tenant_id        TEXT NOT NULL,
    system           TEXT NOT NULL,
    request_type     TEXT NOT NULL,
    categories       TEXT NOT NULL,
    status           TEXT NOT NULL,
    lease_until_us   BIGINT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    records_affected BIGINT NOT NULL DEFAULT 0,
    error            TEXT,
    created_at_us    BIGINT NOT NULL,
    updated_at_us    BIGINT NOT NULL
);
CREATE INDEX subject_tasks_system ON subject_tasks (system, status, seq);
CREATE INDEX subject_tasks_request ON subject_tasks (request_id, seq);

CREATE TABLE subject_export_chunks (
    seq           BIGINT PRIMARY KEY,
    request_id    TEXT NOT NULL,
    task_id       TEXT NOT NULL,
    system        TEXT NOT NULL,
    data          BYTEA NOT NULL,
    created_at_us BIGINT NOT NULL
);
CREATE INDEX subject_export_chunks_request ON subject_export_chunks (request_id, seq);

CREATE TABLE subject_flags (
    tenant_id         TEXT NOT NULL,
    subject_ref       TEXT NOT NULL,
    restricted        BOOLEAN NOT NULL DEFAULT FALSE,
    objected          BOOLEAN NOT NULL DEFAULT FALSE,
    erased            BOOLEAN NOT NULL DEFAULT FALSE,
    consent_withdrawn BOOLEAN NOT NULL DEFAULT FALSE,
    change_seq        BIGINT NOT NULL,
    updated_at_us     BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, subject_ref)
);
CREATE INDEX subject_flags_changes ON subject_flags (change_seq);

CREATE TABLE subject_tenant_settings (
    tenant_id     TEXT PRIMARY KEY,
    time_zone     TEXT NOT NULL,
    sla_days      INTEGER NOT NULL,
    updated_at_us BIGINT NOT NULL
);
