DROP TABLE subject_tenant_settings;
DROP TABLE subject_flags;
DROP TABLE subject_export_chunks;
DROP TABLE subject_tasks;
DROP TABLE subject_systems;
DROP TABLE subject_request_refs;
DROP TABLE subject_requests;
