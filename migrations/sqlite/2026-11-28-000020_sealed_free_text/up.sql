-- Free text that may name people is now sealed with the identifier key
-- ring (src/store/sealed.rs): each field gets a ciphertext column and the
-- id of the key that sealed it beside its old clear column. This version
-- writes the ciphertext and empties the clear column; a migration has no
-- key, so rows written in the clear before (or by the previous version
-- during a rolling upgrade) keep their text until a server seals them (at
-- start and every --seal-clear-interval-seconds) or `proctor keys reseal`
-- does. Until then the clear text is what they show.
-- A request's cancel/reject reason and extension reason, as one sealed
-- JSON document.
ALTER TABLE subject_requests ADD COLUMN reasons_sealed TEXT;
ALTER TABLE subject_requests ADD COLUMN reasons_key_id TEXT;
ALTER TABLE subject_tasks ADD COLUMN error_sealed TEXT;
ALTER TABLE subject_tasks ADD COLUMN error_key_id TEXT;
-- A screened party's name, date of birth, country and aliases, as one
-- sealed JSON document.
ALTER TABLE screening_parties ADD COLUMN sealed TEXT;
ALTER TABLE screening_parties ADD COLUMN key_id TEXT;
ALTER TABLE breaches ADD COLUMN nature_sealed TEXT;
ALTER TABLE breaches ADD COLUMN nature_key_id TEXT;
ALTER TABLE breaches ADD COLUMN contact_point_sealed TEXT;
ALTER TABLE breaches ADD COLUMN contact_point_key_id TEXT;
-- What is still clear, so the servers' periodic sealing pass finds it
-- without reading whole tables; each index empties as rows are sealed.
CREATE INDEX subject_requests_clear_reasons ON subject_requests (seq)
  WHERE (close_reason <> '' OR extension_reason <> '');
CREATE INDEX subject_tasks_clear_error ON subject_tasks (seq) WHERE error <> '';
CREATE INDEX screening_parties_clear ON screening_parties (party_ref) WHERE name <> '';
CREATE INDEX breaches_clear_nature ON breaches (seq) WHERE nature <> '';
CREATE INDEX breaches_clear_contact_point ON breaches (seq) WHERE contact_point <> '';
