DROP INDEX audit_events_tenant_leaf;
DROP SEQUENCE audit_events_seq;
DROP TABLE audit_checkpoints;
DROP TABLE audit_tree_hashes;
DROP INDEX audit_events_unsequenced;
DROP INDEX audit_events_leaf;
ALTER TABLE audit_events DROP COLUMN leaf_index;
