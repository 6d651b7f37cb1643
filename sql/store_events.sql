-- A checked batch of usage lines (sql/accept_events.sql) written: rejects with their raw
-- line, accepted events with their credits.
create or replace temp table batch_rejects as
select c.line_no, c.reason, r.raw
from batch_checked as c
join chunk as r using (line_no)
where c.reason is not null;

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
    $file_id::integer as file_id,
    line_no,
    hash(event_id) as id_hash
from batch_checked
where reason is null
