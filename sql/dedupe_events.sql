-- The cross-line decisions of a usage file, once all its batches are in `events` (§3): an
-- event_id seen before — in an earlier file near the event's day, or earlier in this file —
-- is an exact re-delivery (`duplicate`, counted, not billed) or a conflicting one
-- (`duplicate_conflict`); a line of a day already closed is `too_late` (decided after the
-- duplicate check: a re-delivery of a billed event is a duplicate). Once per file, so the
-- work is linear in the file. Integer hashes narrow each comparison before the ids
-- themselves are compared; the lines not accepted are taken out of `events` again.
create or replace temp table file_decisions as
with nearby as (
    -- this file's lines, and earlier files' events near its days
    select * from events where file_id = $file_id
    union all
    select * from events where day between $min_day and $max_day and file_id <> $file_id
),

repeated_hashes as materialized (
    -- hashes given more than once: in this file, or in this file and an earlier one (an
    -- earlier file holds each id once)
    select id_hash
    from (
        select id_hash from events where file_id = $file_id
        union all
        select id_hash from events
        where day between $min_day and $max_day and file_id <> $file_id
    )
    group by id_hash
    having count(*) > 1
),

copies as (
    -- every copy of those ids (rare): an earlier file's copy first, then this file's in
    -- line order; the first valid copy stands
    select
        file_id,
        line_no,
        struct_pack(
            customer_key := customer_key, account_id := account_id, function := function,
            quantity := quantity, status := status, occurred_at := occurred_at
        ) as content,
        row_number() over w as copy_no,
        first_value(content) over w as first_copy
    from nearby
    where id_hash in (select id_hash from repeated_hashes)
    window w as (partition by event_id order by file_id = $file_id, line_no)
),

duplicates as (
    select
        line_no,
        case when first_copy = content then 'duplicate' else 'duplicate_conflict' end as reason
    from copies
    where file_id = $file_id and copy_no > 1
),

late as (
    select line_no from events where file_id = $file_id and day < $late_before
)

select
    coalesce(d.line_no, l.line_no) as line_no,
    case
        when d.reason = 'duplicate' then 'duplicate'
        when l.line_no is not null then 'too_late'
        else d.reason
    end as reason
from duplicates as d
full join late as l on l.line_no = d.line_no;

delete from events
where file_id = $file_id and line_no in (select line_no from file_decisions)
