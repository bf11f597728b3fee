-- Every recorded screening's result with its evidence: the list versions
-- searched, the threshold and the matcher version (JSON), so an auditor can
-- ask later what a party was screened against. The party is named by its
-- reference only; hits by source, entry id and score (and the case that
-- cleared one), never by the party's name.
CREATE TABLE screening_results (
    id             TEXT PRIMARY KEY,
    party_ref      TEXT NOT NULL,
    tenant_id      TEXT,
    screened_at_us BIGINT NOT NULL,
    why            TEXT NOT NULL,
    outcome        TEXT NOT NULL,
    case_id        TEXT,
    evidence       TEXT NOT NULL,
    hits           TEXT NOT NULL,
    receipt_key_id TEXT
);
CREATE INDEX screening_results_party ON screening_results (party_ref, screened_at_us);
