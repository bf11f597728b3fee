-- Answers to a screening case's clarification request, in order. The case
-- keeps its hits and resolution; answers are the party side's explanation,
-- which may name people, so the text is sealed with the identifier key ring
-- (key_id names the key, the case id is bound in).
CREATE TABLE screening_case_answers (
    case_id        TEXT NOT NULL,
    seq            BIGINT NOT NULL,
    answered_at_us BIGINT NOT NULL,
    answered_by    TEXT NOT NULL,
    text           TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    PRIMARY KEY (case_id, seq)
);
