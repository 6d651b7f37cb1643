-- A checked batch's accepted events of the lines the compiled scanner read
-- (tasks/fast_lines.py), beside sql/store_events.sql's of the others: the business rules'
-- verdict, key and credits from `batch_checked`, which holds nothing else of these lines;
-- the event's text and values from `scanned`, the scanner's own Arrow table. So an event's
-- text is copied once, into `events`, not first into `batch_checked` too (issue 16: events
-- written once). The join reads `scanned` in parallel, as the insert writes; a line's key
-- is its `line_no` whatever order the rows arrive in.
insert into events by name
select
    $first_key + c.line_no as event_key,
    s.event_id,
    c.customer_key,
    s.account_id,
    s.function,
    -- (exact: as sql/extract_events.sql, a micro-unit count times 10^-6, no division)
    cast(cast(s.quantity_micro as decimal(18, 0)) * 0.000001 as decimal(18, 6)) as quantity,
    s.status,
    s.occurred_at_ts as occurred_at,
    c.day,
    c.credits,
    c.catalog_version,
    c.file_id,
    c.file_line as line_no,
    hash(s.event_id) as id_hash
from batch_checked as c
join scanned as s using (line_no)
where c.reason is null and c.scanned
