-- Files platform systems attach to access and portability tasks
-- (recordings, attachments, screen captures), sealed at rest in chunks
-- bound to the artefact and their position; deleted with the export.
CREATE TABLE subject_artifacts (
    id            TEXT PRIMARY KEY,
    task_id       TEXT NOT NULL,
    request_id    TEXT NOT NULL,
    system        TEXT NOT NULL,
    file_name     TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    size          BIGINT NOT NULL,
    sha256        TEXT NOT NULL,
    complete      BOOLEAN NOT NULL,
    created_at_us BIGINT NOT NULL
);
CREATE INDEX subject_artifacts_request ON subject_artifacts (request_id);
CREATE INDEX subject_artifacts_task ON subject_artifacts (task_id);
CREATE TABLE subject_artifact_chunks (
    artifact_id TEXT NOT NULL,
    idx         BIGINT NOT NULL,
    key_id      TEXT NOT NULL,
    data        TEXT NOT NULL,
    PRIMARY KEY (artifact_id, idx)
);
