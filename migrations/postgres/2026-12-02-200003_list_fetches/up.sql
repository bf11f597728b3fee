-- Lists that refresh themselves (--list-url): per source, the validators
-- (ETag, Last-Modified by address, JSON) that make the next download
-- conditional, the lease that lets one replica at a time download and
-- import, and how the last attempt ended.
CREATE TABLE screening_list_fetches (
    source         TEXT PRIMARY KEY,
    validators     TEXT NOT NULL DEFAULT '{}',
    lease_holder   TEXT,
    lease_until_us BIGINT,
    checked_at_us  BIGINT,
    outcome        TEXT NOT NULL DEFAULT ''
);
