-- The cross-line decisions of a usage batch's files (`decide_files`), once all their lines
-- are in `events` (§3): the copies judged by tasks/ingest_usage.py judge_copies()
-- (`duplicate_decisions`: an exact re-delivery is `duplicate`, counted and not billed; other
-- content `duplicate_conflict`), and the lines of a day before the late window (`too_late`,
-- decided after the duplicate check: a re-delivery of a billed event is a duplicate). The
-- lines not accepted are taken out of `events` again.
create or replace temp table file_decisions as
with late as (
    select file_id, line_no
    from events
    where event_key >= $first_key  -- (no event of these files lies before it)
        and file_id in (select file_id from decide_files) and day < $late_before
)

select
    coalesce(d.file_id, l.file_id) as file_id,
    coalesce(d.line_no, l.line_no) as line_no,
    case
        when d.reason = 'duplicate' then 'duplicate'
        when l.line_no is not null then 'too_late'
        else d.reason
    end as reason
from duplicate_decisions as d
full join late as l on l.file_id = d.file_id and l.line_no = d.line_no;

delete from events
where event_key >= $first_key
    and file_id in (select file_id from decide_files)
    and (file_id, line_no) in (select (file_id, line_no) from file_decisions)
