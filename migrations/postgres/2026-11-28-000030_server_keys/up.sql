-- The id (a fingerprint, never the key) of every server key a replica ran
-- with, per purpose: identifier_encryption, identifier_hash,
-- receipt_signing, audit_signing. A replica whose keys disagree with these
-- refuses to start (src/domain/server_keys.rs has the rule). state is
-- current (the key in use), retired (superseded) or staged (seen in a ring
-- behind its first key); one current key per purpose.
CREATE TABLE server_keys (
    purpose TEXT NOT NULL,
    key_id TEXT NOT NULL,
    state TEXT NOT NULL,
    recorded_at_us BIGINT NOT NULL,
    PRIMARY KEY (purpose, key_id)
);
CREATE UNIQUE INDEX server_keys_one_current ON server_keys (purpose) WHERE state = 'current';
