-- The cross-line decisions of a usage file, once all its batches are in `events` (§3): an
-- event_id seen before — in an earlier file near the event's day, or earlier in this file —
-- is an exact re-delivery (`duplicate`, counted, not billed) or a conflicting one
-- (`duplicate_conflict`); a line of a day already closed is `too_late` (decided after the
-- duplicate check: a re-delivery of a billed event is a duplicate). Once per file, so the
-- work is linear in the file. Integer hashes narrow each comparison before the ids
-- themselves are compared; the lines not accepted are taken out of `events` again.
create or replace temp table file_decisions as
with earlier as materialized (
    select
        ev.event_id,
        ev.id_hash,
        struct_pack(
            customer_key := ev.customer_key, account_id := ev.account_id,
            function := ev.function, quantity := ev.quantity, status := ev.status,
            occurred_at := ev.occurred_at
        ) as content
    from events as ev
    where ev.day between $min_day and $max_day
        and ev.file_id <> $file_id
        and ev.id_hash in (select id_hash from events where file_id = $file_id)
),

repeated_hashes as materialized (
    select id_hash from events where file_id = $file_id group by id_hash having count(*) > 1
),

suspects as (
    select
        s.line_no,
        s.event_id,
        struct_pack(
            customer_key := s.customer_key, account_id := s.account_id,
            function := s.function, quantity := s.quantity, status := s.status,
            occurred_at := s.occurred_at
        ) as content
    from events as s
    where s.file_id = $file_id
        and (s.id_hash in (select id_hash from earlier)
            or s.id_hash in (select id_hash from repeated_hashes))
),

repeated as (
    -- an event_id given more than once in this file (rare): the first valid copy stands
    select
        line_no,
        row_number() over (partition by event_id order by line_no) as copy_no,
        first_value(content) over (partition by event_id order by line_no) as first_copy
    from suspects
),

duplicates as (
    select
        c.line_no,
        case
            when e.event_id is not null then
                case when e.content = c.content then 'duplicate' else 'duplicate_conflict' end
            when r.copy_no > 1 then
                case when r.first_copy = c.content then 'duplicate' else 'duplicate_conflict' end
        end as reason
    from suspects as c
    left join earlier as e using (event_id)
    join repeated as r using (line_no)
    where e.event_id is not null or r.copy_no > 1
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
