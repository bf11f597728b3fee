-- Export chunks hold a data subject's records: they are now sealed with the
-- identifier key ring (XChaCha20-Poly1305, bound to their task). key_id names
-- the key; NULL marks a chunk written before sealing, read as it is.
ALTER TABLE subject_export_chunks ADD COLUMN key_id TEXT;
