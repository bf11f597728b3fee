-- Requests from public authorities (EU SCC 2021/914, Clause 15): one row
-- per request (lists as JSON text), and the tenants each names. The free
-- text (legal basis, reference, subject references, challenge outcome,
-- note) is one JSON document sealed with the identifier key ring; the
-- clear column `texts` stays empty and exists so the sealing passes treat
-- this table as they treat the others.

CREATE TABLE authority_requests (
    seq                         INTEGER PRIMARY KEY,
    id                          TEXT NOT NULL UNIQUE,
    authority                   TEXT NOT NULL,
    country                     TEXT NOT NULL,
    received_at_us              BIGINT NOT NULL,
    categories                  TEXT NOT NULL,
    status                      TEXT NOT NULL,
    notice_prohibited_until_us  BIGINT,
    notified_at_us              BIGINT,
    outcome                     TEXT,
    disclosed_categories        TEXT NOT NULL DEFAULT '[]',
    challenged                  BOOLEAN NOT NULL DEFAULT FALSE,
    responded_at_us             BIGINT,
    texts                       TEXT NOT NULL DEFAULT '',
    texts_sealed                TEXT,
    texts_key_id                TEXT,
    created_at_us               BIGINT NOT NULL,
    updated_at_us               BIGINT NOT NULL
);
CREATE INDEX authority_requests_received ON authority_requests (received_at_us);
-- What the notice-release job looks for: notices still waiting.
CREATE INDEX authority_requests_waiting ON authority_requests (notice_prohibited_until_us)
  WHERE notified_at_us IS NULL;

CREATE TABLE authority_request_tenants (
    request_id TEXT NOT NULL,
    tenant_id  TEXT NOT NULL,
    PRIMARY KEY (request_id, tenant_id)
);
CREATE INDEX authority_request_tenants_tenant ON authority_request_tenants (tenant_id);
