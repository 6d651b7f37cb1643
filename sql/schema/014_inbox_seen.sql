-- Inbox files recognised by their content under another path or stat than the one they
-- were ingested (or turned away) under: a data dir moved or restored, a file copied or
-- touched. Their path, size and mtime, so that the next runs skip them by stat as they skip
-- the files they ingested, instead of hashing them again every night (tasks/ingest.py
-- `_new_files`). Only a row whose sha256 is still complete or turned away counts. Internal.
create table if not exists inbox_seen (
    path varchar primary key,
    bytes bigint,
    mtime_ns bigint,
    sha256 varchar,
    seen_at timestamptz
);

comment on table inbox_seen is 'Inbox files known by their content under another path or stat (a moved data dir, a copy): skipped by stat on the next runs, not hashed again; internal';
