DROP TABLE screening_list_fetches;
