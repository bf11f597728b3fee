DROP TABLE envelopes;
DROP TABLE audit_events;
