DROP TABLE screening_clearances;
DROP TABLE screening_cases;
DROP TABLE screening_parties;
DROP TABLE screening_entries;
DROP TABLE screening_list_versions;
