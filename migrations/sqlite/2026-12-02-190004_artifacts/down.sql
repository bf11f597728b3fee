DROP TABLE subject_artifact_chunks;
DROP TABLE subject_artifacts;
