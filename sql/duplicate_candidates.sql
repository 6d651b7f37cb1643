-- The copies a usage batch's duplicate check compares (billing-rules §3 "Duplicates"): the
-- new files' lines (`decide_files`) whose event_id is given more than once among them, or by
-- an earlier file's accepted event dated within the window of their days
-- ($min_day..$max_day), and those earlier events. Integer hashes narrow the search (a
-- semi-join on the new lines' hashes, so the earlier days are probed, never grouped); the ids
-- themselves decide. Few rows: the per-copy decision is made in tasks/ingest_usage.py
-- judge_copies().
-- The earlier events first, in steps: the new lines' hashes with their counts (a table of
-- its own, so that the probe below builds on them, not on the window; grouped once, for the
-- probe and for the hashes repeated among the new lines: 10M new events 1.2 s, was 4.6 s
-- grouping them twice); the window's events sharing one, found on
-- narrow columns (day, event_key, id_hash, file_id — the files' own events skipped by key
-- before any hash is compared: they lie at and after $before_key, the first key of files
-- ingested afresh; a resumed file's are set apart by file_id on the few matches); then only
-- those few rows read whole (the join hands their keys' range and a Bloom filter to the
-- scan, so only the row groups around them are read: reading the window's every column cost
-- seconds once it held a month of events). temp.history_events: also the days the working
-- database no longer holds.
create or replace temp table new_hashes as
select id_hash, count(*) as copies from events
where event_key >= $first_key and file_id in (select file_id from decide_files)
group by id_hash;

create or replace temp table earlier_keys as
with hashed as materialized (
    -- (materialized: the files' own events are set apart on these few rows afterwards; a
    -- NOT IN over the whole window before the semi-join cost seconds)
    select event_key, file_id
    from history_events
    where day between $min_day and $max_day
        and event_key < $before_key
        and id_hash in (select id_hash from temp.new_hashes)
)

select event_key from hashed where file_id not in (select file_id from decide_files);

create or replace temp table earlier_events as
select *
from history_events
where day between $min_day and $max_day
    and event_key in (select event_key from temp.earlier_keys);

create or replace temp table duplicate_candidates as
with mine as (
    select * from events
    -- ($first_key: no event of these files lies before it; the history is skipped)
    where event_key >= $first_key and file_id in (select file_id from decide_files)
),

earlier as (
    select * from temp.earlier_events
),

repeated_in_files as (
    select id_hash from temp.new_hashes where copies > 1
),

copies as (
    select *, true as is_new from mine
    where id_hash in (select id_hash from repeated_in_files)
        or id_hash in (select id_hash from earlier)
    union all
    select *, false as is_new from earlier
),

repeated_ids as (
    select event_id from copies group by event_id having count(*) > 1
)

select
    event_key, file_id, line_no, event_id, day, is_new,
    customer_key, account_id, function, quantity, status, occurred_at
from copies
where event_id in (select event_id from repeated_ids)
