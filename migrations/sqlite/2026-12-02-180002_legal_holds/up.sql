-- Legal holds (issue 18): data a tenant must keep for litigation. The
-- subject is found by a hash of tenant and ref (`subject_hash`, empty for
-- the whole tenant); the ref itself and the reasons are one JSON document
-- sealed with the identifier key ring (`texts_*`). `ended_at_us` is set
-- when the hold is released or its `until` passed and the withheld erasure
-- was issued.
CREATE TABLE legal_holds (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    subject_hash    TEXT NOT NULL DEFAULT '',
    categories      TEXT NOT NULL DEFAULT '[]',
    reference       TEXT NOT NULL DEFAULT '',
    placed_by       TEXT NOT NULL,
    placed_at_us    BIGINT NOT NULL,
    until_us        BIGINT,
    released_at_us  BIGINT,
    released_by     TEXT,
    ended_at_us     BIGINT,
    texts_sealed    TEXT,
    texts_key_id    TEXT
);
CREATE INDEX legal_holds_tenant ON legal_holds (tenant_id, ended_at_us);
CREATE INDEX legal_holds_until ON legal_holds (until_us);

-- The part of an erasure a hold withheld: one row per request and system,
-- with the categories not issued; `issued_at_us` once issued as a task.
CREATE TABLE legal_hold_withheld (
    id              TEXT PRIMARY KEY,
    request_id      TEXT NOT NULL,
    tenant_id       TEXT NOT NULL,
    system          TEXT NOT NULL,
    categories      TEXT NOT NULL,
    created_at_us   BIGINT NOT NULL,
    issued_at_us    BIGINT
);
CREATE INDEX legal_hold_withheld_tenant ON legal_hold_withheld (tenant_id, issued_at_us);
CREATE INDEX legal_hold_withheld_request ON legal_hold_withheld (request_id);
