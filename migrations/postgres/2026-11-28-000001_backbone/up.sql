-- Backbone: the audit chain and the inbox. Times are microseconds since the
-- Unix epoch (BIGINT) so both backends share one schema and one code path.

CREATE TABLE audit_events (
    seq         BIGINT PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    at_us       BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    role        TEXT NOT NULL,
    tenant_id   TEXT,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    trace_id    TEXT NOT NULL,
    detail      TEXT NOT NULL,
    prev_digest TEXT NOT NULL,
    digest      TEXT NOT NULL
);
CREATE INDEX audit_events_tenant ON audit_events (tenant_id, seq);

CREATE TABLE envelopes (
    seq            BIGINT PRIMARY KEY,
    id             TEXT NOT NULL UNIQUE,
    recipient      TEXT NOT NULL,
    kind           TEXT NOT NULL,
    payload        TEXT NOT NULL,
    created_at_us  BIGINT NOT NULL,
    lease_until_us BIGINT,
    delivery_count INTEGER NOT NULL DEFAULT 0,
    acked_at_us    BIGINT
);
CREATE INDEX envelopes_pending ON envelopes (recipient, seq) WHERE acked_at_us IS NULL;
