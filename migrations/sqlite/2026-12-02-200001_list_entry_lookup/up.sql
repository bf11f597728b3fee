-- GetListEntry looks an entry up by its list id across a source's
-- versions: by entry id first, not by version.
CREATE INDEX screening_entries_by_entry ON screening_entries (entry_id, version_seq);
