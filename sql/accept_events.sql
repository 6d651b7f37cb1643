-- Business checks of a batch of usage lines (billing-rules §3), in rule order: the first
-- failing rule names the reason. A query over `batch`, the lines' facts
-- (sql/extract_events.sql): tasks/ingest_usage.py runs the two as one statement, so the
-- lines are parsed, checked, rated and materialised once (`batch_checked`). The row schema's
-- failures (Pandera, only for the lines that are not `clean`) come first: they replace
-- `reason` afterwards. Lines that pass every rule go into `events` with their credits, rated
-- by the catalog version in force at occurred_at (the file's duplicate check,
-- sql/dedupe_events.sql, follows in the same transaction); the others are rejected with
-- their raw line.
with lines as (
    select
        b.line_no,
        b.file_id,
        b.file_line,
        b.clean,
        b.event_id,
        b.customer_id,
        b.account_id,
        b.function,
        b.quantity,
        b.quantity_micro,
        b.status,
        b.occurred_at_ts,
        timezone($tz, b.occurred_at_ts)::date as day,
        k.customer_key
    from batch as b
    left join customers as k on k.customer_id = b.customer_id
),

priced as (
    select
        l.*,
        f.code is not null as known_function,
        f.version_id as catalog_version,
        f.editions,
        f.unit_size_micro,
        f.credits_per_unit,
        f.whole_number,
        len(f.allowed_quantities_micro) = 0
            or list_contains(f.allowed_quantities_micro, l.quantity_micro) as quantity_allowed,
        len(f.editions) > 0 as needs_entitlement
    from lines as l
    -- the version in force at occurred_at (every code has one at every instant)
    left join catalog_functions as f
        on f.code = l.function
        and l.occurred_at_ts >= coalesce(f.effective_from, '-infinity'::timestamptz)
        and l.occurred_at_ts < coalesce(f.effective_until, 'infinity'::timestamptz)
),

entitled as (
    -- an enterprise-only function needs an active subscription of an entitled edition
    select distinct p.line_no
    from priced as p
    join pools as s
        on s.customer_key = p.customer_key
        and s.source = 'subscription'
        and list_contains(p.editions, s.product)
        and s.available_from <= p.occurred_at_ts
        and p.occurred_at_ts < s.expires_at
    where p.needs_entitlement
)

select
    p.line_no,
    p.file_id,
    p.file_line,
    p.clean,
    p.event_id,
    p.customer_key,
    p.account_id,
    p.function,
    p.quantity,
    p.status,
    p.occurred_at_ts as occurred_at,
    p.day,
    case
        -- §3 "Time window": dated after today + 1 day
        when p.day > $last_day then 'in_future'
        when not p.known_function then 'unknown_function'
        when not p.quantity_allowed then 'quantity_not_allowed'
        when p.whole_number and p.quantity_micro % 1000000 <> 0 then 'quantity_not_whole'
        when p.customer_key is null then 'unknown_customer'
        when p.needs_entitlement and e.line_no is null then 'not_entitled'
    end as reason,
    case
        when p.status = 'failed' then 0
        else ((p.quantity_micro + p.unit_size_micro - 1) // p.unit_size_micro)
            * p.credits_per_unit
    end as credits,
    p.catalog_version
from priced as p
left join entitled as e using (line_no)
