-- Listing a tenant's events walks (tenant_id, leaf_index) since the log
-- became a tree; nothing reads (tenant_id, seq) any more. Every audited
-- write inserted into it, and on PostgreSQL the sequencer's update that
-- gives an event its leaf (not a HOT update: leaf_index is indexed)
-- inserted into it again.
DROP INDEX audit_events_tenant;
