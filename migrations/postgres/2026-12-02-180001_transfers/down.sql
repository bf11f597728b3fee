ALTER TABLE sub_processors DROP COLUMN processing_locations;
