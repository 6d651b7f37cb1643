-- The per-day tables laid out by day (tasks/day_files.py): each billed day's rows of events,
-- ledger_entries, pool_days, customer_days, usage_days and account_days written once as
-- Parquet under <state>/days/<table>/<run_id>/day=YYYY-MM-DD/, and the working database
-- keeping only the recent days' rows (the ones a run can still change without a rebill).
-- The published warehouse reads the same files: nothing of the history is copied twice.
-- Re-runnable.

create table if not exists day_files (
    table_name varchar,
    day date,
    path varchar,                    -- relative to the state dir
    rows bigint,
    run_id varchar,                  -- the run that wrote it
    written_at timestamptz,
    superseded_at timestamptz        -- null: the day's current file; else kept for readers
);                                   -- of an older warehouse, then collected

create table if not exists day_exports (
    run_id varchar,                  -- a run whose billed days and events are written out
    exported_at timestamptz,
    event_key bigint                 -- every event up to this key is written out
);

create table if not exists day_changes (
    day date                         -- a day changed in place outside its billing (re-rated
);                                   -- events of a day not billed again): written out next

comment on table day_files is 'The Parquet files holding each day''s rows of the per-day tables (current: superseded_at is null); internal';
comment on table day_exports is 'Runs whose billed days and events are written to the per-day Parquet files; internal';
comment on table day_changes is 'Days changed in place since they were last written to their day files; internal';
