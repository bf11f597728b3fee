-- Where a sub-processor processes (issue 18, transfers): a JSON list of
-- ISO 3166-1 alpha-2 codes. Rows written before this column read '[]' as
-- `[country]`, which is what they were registered with.
ALTER TABLE sub_processors ADD COLUMN processing_locations TEXT NOT NULL DEFAULT '[]';
