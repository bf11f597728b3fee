-- The audit log becomes an RFC 6962 Merkle tree. Events are written in
-- their command's transaction without a leaf index; the sequencer assigns
-- indexes after commit, stores the tree's hashes (by the stored-hash index
-- of the tlog layout: every complete subtree's hash) and signs a checkpoint
-- of each tree size it reaches. Events already stored become the first
-- leaves, in the order they were written.
ALTER TABLE audit_events ADD COLUMN leaf_index BIGINT;
CREATE UNIQUE INDEX audit_events_leaf ON audit_events (leaf_index);
CREATE INDEX audit_events_unsequenced ON audit_events (seq) WHERE leaf_index IS NULL;

CREATE TABLE audit_tree_hashes (
    idx  BIGINT PRIMARY KEY,
    hash BLOB NOT NULL
);

CREATE TABLE audit_checkpoints (
    tree_size    BIGINT PRIMARY KEY,
    root_hash    BLOB NOT NULL,
    note         TEXT NOT NULL,
    signed_at_us BIGINT NOT NULL
);

CREATE INDEX audit_events_tenant_leaf ON audit_events (tenant_id, leaf_index);
