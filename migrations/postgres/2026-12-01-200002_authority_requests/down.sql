DROP TABLE authority_request_tenants;
DROP TABLE authority_requests;
