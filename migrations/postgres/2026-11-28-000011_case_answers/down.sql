DROP TABLE screening_case_answers;
