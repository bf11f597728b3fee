-- Screening: versioned list snapshots (one row per entry per version, with
-- its content digest and how it changed against the previous version), the
-- parties screened under a party_ref, review cases, and cleared
-- (false-positive) pairs of party and list entry.

CREATE TABLE screening_list_versions (
    seq            INTEGER PRIMARY KEY,
    source         TEXT NOT NULL,
    version        BIGINT NOT NULL,
    sha256         TEXT NOT NULL,
    entries        BIGINT NOT NULL,
    added          BIGINT NOT NULL,
    removed        BIGINT NOT NULL,
    changed        BIGINT NOT NULL,
    imported_at_us BIGINT NOT NULL,
    imported_by    TEXT NOT NULL,
    UNIQUE (source, version)
);

CREATE TABLE screening_entries (
    version_seq BIGINT NOT NULL REFERENCES screening_list_versions (seq),
    entry_id    TEXT NOT NULL,
    digest      TEXT NOT NULL,
    change      TEXT NOT NULL,
    data        TEXT NOT NULL,
    PRIMARY KEY (version_seq, entry_id)
);

CREATE TABLE screening_parties (
    party_ref     TEXT PRIMARY KEY,
    tenant_id     TEXT,
    name          TEXT NOT NULL,
    party_type    TEXT NOT NULL,
    date_of_birth TEXT NOT NULL,
    country       TEXT NOT NULL,
    aliases       TEXT NOT NULL,
    updated_at_us BIGINT NOT NULL
);

CREATE TABLE screening_cases (
    seq            INTEGER PRIMARY KEY,
    id             TEXT NOT NULL UNIQUE,
    party_ref      TEXT NOT NULL,
    tenant_id      TEXT,
    status         TEXT NOT NULL,
    hits           TEXT NOT NULL,
    opened_at_us   BIGINT NOT NULL,
    opened_by      TEXT NOT NULL,
    resolved_at_us BIGINT,
    resolved_by    TEXT,
    note           TEXT NOT NULL
);
CREATE INDEX screening_cases_party ON screening_cases (party_ref, status);
CREATE INDEX screening_cases_tenant ON screening_cases (tenant_id, seq);

CREATE TABLE screening_clearances (
    party_ref     TEXT NOT NULL,
    source        TEXT NOT NULL,
    entry_id      TEXT NOT NULL,
    digest        TEXT NOT NULL,
    case_id       TEXT NOT NULL,
    cleared_at_us BIGINT NOT NULL,
    PRIMARY KEY (party_ref, source, entry_id)
);
