DROP TABLE breach_tenants;
DROP TABLE breaches;
