-- A checked batch of usage lines (sql/accept_events.sql) written: rejects with their raw
-- line, accepted events with their credits, and each file's counts. A batch holds the lines
-- of one large file or of several small ones (`batch_files`: file_id, path); `line_no` is
-- the batch's row key, in ingest order (files in path order, lines in order).
insert into rejected_events
select f.path, c.file_line, r.raw, c.reason, now(), $run_id
from batch_checked as c
join chunk as r using (line_no)
join batch_files as f on f.file_id = c.file_id
where c.reason is not null
order by c.line_no;

-- accepted so far: written once, where they stay unless the duplicate check
-- (sql/dedupe_events.sql) takes them out again, in the same transaction
insert into events by name
select
    $first_key + line_no as event_key,
    event_id,
    customer_key,
    account_id,
    function,
    quantity,
    status,
    occurred_at,
    day,
    credits,
    catalog_version,
    file_id,
    file_line as line_no,
    hash(event_id) as id_hash
from batch_checked
where reason is null;

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
