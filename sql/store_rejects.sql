-- A checked batch's rejected lines written with their raw line and reason (the row schema's
-- for the lines that are not clean, sql/store_events.sql's note), and each file's counts.
-- `batch_files`: file_id, path of the batch's files.
insert into rejected_events
select f.path, c.file_line, r.raw, c.reason, now(), $run_id
from batch_checked as c
join chunk as r using (line_no)
join batch_files as f on f.file_id = c.file_id
where c.reason is not null
order by c.line_no;

update ingested_files as f
set accepted = f.accepted + n.accepted, rejected = f.rejected + n.rejected
from (
    select
        file_id,
        count(*) filter (where reason is null) as accepted,
        count(*) filter (where reason is not null) as rejected
    from batch_checked
    group by file_id
) as n
where f.file_id = n.file_id
