-- Questions platform systems ask a request's controller, and the answers;
-- both texts sealed (they may quote the person).
CREATE TABLE subject_questions (
    id              TEXT PRIMARY KEY,
    request_id      TEXT NOT NULL,
    tenant_id       TEXT NOT NULL,
    asked_by        TEXT NOT NULL,
    question_key_id TEXT NOT NULL,
    question_sealed TEXT NOT NULL,
    asked_at_us     BIGINT NOT NULL,
    answer_key_id   TEXT,
    answer_sealed   TEXT,
    answered_by     TEXT,
    answered_at_us  BIGINT
);
CREATE INDEX subject_questions_request ON subject_questions (request_id, asked_at_us);
-- Beside each request that has one: the system that forwarded it (it may
-- ask too), how many questions it was asked, and while it awaits the
-- controller the status it returns to and since when proctor's SLA is
-- paused.
CREATE TABLE subject_request_waits (
    request_id       TEXT PRIMARY KEY,
    forwarded_by     TEXT,
    resume_status    TEXT,
    sla_paused_at_us BIGINT,
    questions        BIGINT NOT NULL DEFAULT 0
);
