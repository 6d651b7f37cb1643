-- A checked batch's accepted events (sql/accept_events.sql: clean lines that pass every
-- business rule) written with their credits, once, where they stay unless the duplicate
-- check (sql/dedupe_events.sql) takes them out again in the same transaction. A batch holds
-- the lines of one large file or of several small ones; `line_no` is the batch's row key, in
-- ingest order (files in path order, lines in order). The lines that are not clean are
-- rejected whatever their business rules say: their row schema reasons (Pandera) are being
-- named meanwhile, and sql/store_rejects.sql writes them afterwards.
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
where reason is null and clean
