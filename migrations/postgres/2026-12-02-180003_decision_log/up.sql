-- The decision log (issue 18): every DENY and a sample of ALLOWs, written
-- off the request path in batches. The subject ref is sealed with the
-- identifier key ring (bound to the decision id); rows older than
-- --decision-log-retention-days are swept.
CREATE TABLE decision_log (
    seq BIGSERIAL PRIMARY KEY,
    decision_id          TEXT NOT NULL UNIQUE,
    at_us                BIGINT NOT NULL,
    tenant_id            TEXT NOT NULL,
    category             TEXT NOT NULL,
    purpose              TEXT NOT NULL,
    region               TEXT NOT NULL,
    sub_processor_id     TEXT NOT NULL,
    subject_sealed       TEXT,
    subject_key_id       TEXT,
    allowed              BOOLEAN NOT NULL,
    reasons              TEXT NOT NULL,
    instruction_version  BIGINT NOT NULL,
    caller               TEXT NOT NULL,
    trace_id             TEXT NOT NULL
);
CREATE INDEX decision_log_tenant ON decision_log (tenant_id, seq);
CREATE INDEX decision_log_at ON decision_log (at_us);
