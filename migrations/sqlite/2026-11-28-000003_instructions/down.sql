DROP TABLE decision_changes;
DROP TABLE tenants;
DROP TABLE instruction_versions;
DROP TABLE taxonomy;
