DROP TABLE sub_processor_modes;
DROP TABLE sub_processor_notice_tenants;
DROP TABLE sub_processor_notices;
DROP TABLE sub_processors;
