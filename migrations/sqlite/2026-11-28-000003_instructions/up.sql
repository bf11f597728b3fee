-- Controller instructions: the taxonomy of keys, immutable versions per
-- tenant, tenant contract state, and the change log replicas follow to
-- refresh their in-memory decision snapshots.

CREATE TABLE taxonomy (
    kind          TEXT NOT NULL,
    key           TEXT NOT NULL,
    description   TEXT NOT NULL,
    created_at_us BIGINT NOT NULL,
    PRIMARY KEY (kind, key)
);

INSERT INTO taxonomy (kind, key, description, created_at_us) VALUES
    ('category', 'contact', 'Contact records of the tenant''s customers', 0),
    ('category', 'agent', 'Agent (employee) records', 0),
    ('category', 'interaction_metadata', 'Call, chat and ticket metadata', 0),
    ('category', 'recording', 'Call and screen recordings', 0),
    ('category', 'transcript', 'Transcripts of calls and chats', 0),
    ('category', 'attachment', 'Files exchanged in interactions', 0),
    ('category', 'screen_capture', 'Screen captures of agent desktops', 0),
    ('purpose', 'service_delivery', 'Providing the contracted contact-center service', 0),
    ('purpose', 'support', 'Technical support of the tenant', 0),
    ('purpose', 'quality_assurance', 'Quality review of interactions', 0),
    ('purpose', 'analytics_anonymized', 'Analytics on anonymised data', 0),
    ('purpose', 'billing', 'Billing the tenant', 0),
    ('purpose', 'transcription', 'Speech-to-text transcription', 0);

CREATE TABLE instruction_versions (
    tenant_id     TEXT NOT NULL,
    version       BIGINT NOT NULL,
    created_at_us BIGINT NOT NULL,
    author        TEXT NOT NULL,
    reason        TEXT NOT NULL,
    body          TEXT NOT NULL,
    PRIMARY KEY (tenant_id, version)
);

CREATE TABLE tenants (
    tenant_id             TEXT PRIMARY KEY,
    terminated_at_us      BIGINT,
    termination_reason    TEXT,
    erasure_due_at_us     BIGINT,
    updated_at_us         BIGINT NOT NULL
);

CREATE TABLE decision_changes (
    seq       INTEGER PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    at_us     BIGINT NOT NULL
);
