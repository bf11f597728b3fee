DROP TABLE decision_log;
