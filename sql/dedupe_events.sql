-- The cross-line decisions of a usage file, once all its batches are in `events` (§3): the
-- copies judged by tasks/ingest.py judge_copies() (`duplicate_decisions`: an exact
-- re-delivery is `duplicate`, counted and not billed; other content `duplicate_conflict`),
-- and the lines of a day before the late window (`too_late`, decided after the duplicate
-- check: a re-delivery of a billed event is a duplicate). The lines not accepted are taken
-- out of `events` again.
create or replace temp table file_decisions as
with late as (
    select line_no from events where file_id = $file_id and day < $late_before
)

select
    coalesce(d.line_no, l.line_no) as line_no,
    case
        when d.reason = 'duplicate' then 'duplicate'
        when l.line_no is not null then 'too_late'
        else d.reason
    end as reason
from duplicate_decisions as d
full join late as l on l.line_no = d.line_no;

delete from events
where file_id = $file_id and line_no in (select line_no from file_decisions)
