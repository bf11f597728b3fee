DROP TABLE subject_request_waits;
DROP TABLE subject_questions;
