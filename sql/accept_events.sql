-- Business checks of a validated chunk of usage lines (billing-rules §3), in rule order:
-- the first failing rule names the reason; `duplicate` marks an exact re-delivery.
with lines as (
    select
        c.line_no,
        c.reason,
        c.event_id,
        c.customer_id,
        c.account_id,
        c.function,
        c.quantity,
        c.quantity_micro,
        c.status,
        c.occurred_at_ts,
        timezone($tz, c.occurred_at_ts)::date as day,
        k.customer_key
    from chunk_checked as c
    left join customers as k using (customer_id)
),

priced as (
    select
        l.*,
        f.code is not null as known_function,
        f.unit_size_micro,
        f.credits_per_unit,
        f.whole_number,
        len(f.allowed_quantities_micro) = 0
            or list_contains(f.allowed_quantities_micro, l.quantity_micro) as quantity_allowed,
        len(f.editions) > 0 as needs_entitlement
    from lines as l
    left join catalog_functions as f on f.code = l.function
),

entitled as (
    -- an enterprise-only function needs an active subscription of an entitled edition
    select distinct p.line_no
    from priced as p
    join catalog_functions as f on f.code = p.function
    join pools as s
        on s.customer_key = p.customer_key
        and s.source = 'subscription'
        and list_contains(f.editions, s.product)
        and s.available_from <= p.occurred_at_ts
        and p.occurred_at_ts < s.expires_at
    where p.reason is null and p.needs_entitlement
),

checked as (
    select
        p.*,
        case
            when p.reason is not null then p.reason
            when not p.known_function then 'unknown_function'
            when not p.quantity_allowed then 'quantity_not_allowed'
            when p.whole_number and p.quantity_micro % 1000000 <> 0 then 'quantity_not_whole'
            when p.customer_key is null then 'unknown_customer'
            when p.needs_entitlement and e.line_no is null then 'not_entitled'
        end as business_reason,
        -- decided after the duplicate check: a re-delivery of a billed event is a duplicate
        p.day < $late_before as too_late
    from priced as p
    left join entitled as e using (line_no)
),

contents as (
    -- what makes two copies of an event_id the same event
    select
        line_no,
        event_id,
        struct_pack(
            customer_key := customer_key, account_id := account_id, function := function,
            quantity := quantity, status := status, occurred_at := occurred_at_ts
        ) as content
    from checked
    where business_reason is null
),

earlier as (
    -- copies already ingested (earlier runs, files and chunks) near the lines' days
    select
        ev.event_id,
        struct_pack(
            customer_key := ev.customer_key, account_id := ev.account_id,
            function := ev.function, quantity := ev.quantity, status := ev.status,
            occurred_at := ev.occurred_at
        ) as content
    from events as ev
    where ev.day between $min_day and $max_day
        -- an integer key first (text compares cost ~5x), the id itself in the join below
        and ev.id_hash in (select md5_number_lower(event_id) from contents)
),

repeated as (
    -- event_ids given more than once in this chunk (rare): the first valid copy stands
    select
        line_no,
        row_number() over (partition by event_id order by line_no) as copy_no,
        first_value(content) over (partition by event_id order by line_no) as first_copy
    from contents
    where event_id in (
        select event_id from contents group by event_id having count(*) > 1
    )
),

deduplicated as (
    select
        c.line_no,
        case
            when e.event_id is not null then
                case when e.content = c.content then 'duplicate' else 'duplicate_conflict' end
            when r.copy_no > 1 then
                case when r.first_copy = c.content then 'duplicate' else 'duplicate_conflict' end
        end as duplicate_reason
    from contents as c
    left join earlier as e using (event_id)
    left join repeated as r using (line_no)
    where e.event_id is not null or r.copy_no > 1
),

decided as (
    select
        c.line_no,
        c.event_id,
        c.customer_key,
        c.account_id,
        c.function,
        c.quantity,
        c.status,
        c.occurred_at_ts,
        c.day,
        case
            when c.business_reason is not null then c.business_reason
            when d.duplicate_reason = 'duplicate' then 'duplicate'
            when c.too_late then 'too_late'
            else d.duplicate_reason
        end as final_reason,
        case
            when c.status = 'failed' then 0
            else ((c.quantity_micro + c.unit_size_micro - 1) // c.unit_size_micro)
                * c.credits_per_unit
        end as credits
    from checked as c
    left join deduplicated as d using (line_no)
)

select * from decided
