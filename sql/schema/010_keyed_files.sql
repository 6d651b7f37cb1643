-- Tables published as a base file plus the rows changed since it (tasks/day_files.py KEYED):
-- `pools` is one row per pool of every customer ever, most of them unchanged on any day, so a
-- run writes only the pools that changed since the base instead of copying them all into
-- the warehouse. Re-runnable.

alter table day_files add column if not exists part varchar;  -- null: a day's file; 'base' or
                                                               -- 'delta' of a KEYED table

create table if not exists keyed_changes (
    table_name varchar,
    key bigint,                      -- the row's key (pools.pool_key), changed or deleted
    exported boolean,                -- written to the table's current delta file
    primary key (table_name, key)
);

comment on table keyed_changes is 'Rows of the keyed tables (pools) changed since their base file, for the next delta file; internal';
