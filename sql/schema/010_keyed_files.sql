-- Tables published as a base file plus the rows changed since it (tasks/day_files.py KEYED,
-- MONTHLY): `pools` is one row per pool of every customer ever and a month's statements one
-- per customer, most of them unchanged on any day, so a run writes only the rows that changed
-- since the base instead of copying or rewriting them all. Re-runnable.

alter table day_files add column if not exists part varchar;  -- null: a day's file; 'base' or
                                                               -- 'delta' of a KEYED table

create table if not exists keyed_changes (
    table_name varchar,              -- pools, or statements (its rows, lines and pools)
    day date,                        -- the month of a statement; 0001-01-01 for pools
    key bigint,                      -- the row's key (pool_key; a statement's customer_key)
    exported boolean,                -- written to the current delta file
    primary key (table_name, day, key)
);

comment on table keyed_changes is 'Rows of the keyed tables (pools; a month''s statements) changed since their base file, for the next delta file; internal';
