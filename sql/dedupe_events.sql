-- The cross-line decisions of a batch of usage lines that passed every other check (§3),
-- after sql/store_events.sql wrote them to `events` (same transaction): an event_id seen
-- before — in an earlier file or batch near the event's day, or earlier in this batch — is
-- an exact re-delivery (`duplicate`, counted, not billed) or a conflicting one
-- (`duplicate_conflict`); a line of a day already closed is `too_late` (decided after the
-- duplicate check: a re-delivery of a billed event is a duplicate). Integer hashes narrow
-- each comparison before the ids themselves are compared; the lines not accepted are taken
-- out of `events` again and join the batch's rejects.
create or replace temp table batch_decisions as
with fresh as (
    select *
    from events
    where file_id = $file_id and line_no between $first_line and $last_line
),

earlier as (
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
        and not (ev.file_id = $file_id and ev.line_no between $first_line and $last_line)
        and ev.id_hash in (select id_hash from fresh)
),

repeated_hashes as (
    select id_hash from fresh group by id_hash having count(*) > 1
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
    from fresh as s
    where s.id_hash in (select id_hash from earlier)
        or s.id_hash in (select id_hash from repeated_hashes)
),

repeated as (
    -- an event_id given more than once in this batch (rare): the first valid copy stands
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
    select line_no from fresh where day < $late_before
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
where file_id = $file_id
    and line_no between $first_line and $last_line
    and line_no in (select line_no from batch_decisions);

insert into batch_rejects
select d.line_no, d.reason, c.raw
from batch_decisions as d
join chunk as c using (line_no)
