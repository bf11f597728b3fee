CREATE INDEX audit_events_tenant ON audit_events (tenant_id, seq);
