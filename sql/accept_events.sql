-- Business checks of a validated chunk of usage lines (billing-rules §3), in rule order:
-- the first failing rule names the reason; `duplicate` marks an exact re-delivery.
with lines as (
    select
        c.*,
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
        f.allowed_quantities_micro,
        f.editions
    from lines as l
    left join catalog_functions as f on f.code = l.function
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
    where p.reason is null and len(p.editions) > 0
),

checked as (
    select
        p.*,
        case
            when p.reason is not null then p.reason
            when not p.known_function then 'unknown_function'
            when len(p.allowed_quantities_micro) > 0
                and not list_contains(p.allowed_quantities_micro, p.quantity_micro)
                then 'quantity_not_allowed'
            when p.whole_number and p.quantity_micro % 1000000 <> 0 then 'quantity_not_whole'
            when p.customer_key is null then 'unknown_customer'
            when len(p.editions) > 0 and e.line_no is null then 'not_entitled'
            when p.day < $late_before then 'too_late'
        end as business_reason
    from priced as p
    left join entitled as e using (line_no)
),

earlier as (
    -- copies already ingested (earlier runs, files and chunks)
    select
        ev.event_id,
        ev.customer_key,
        ev.account_id,
        ev.function,
        ev.quantity,
        ev.status,
        ev.occurred_at
    from events as ev
    where ev.day between $min_day and $max_day
        and ev.event_id in (select event_id from checked where business_reason is null)
),

ranked as (
    select
        c.*,
        row_number() over (partition by c.event_id order by c.line_no) as copy_no,
        first_value(
            struct_pack(
                customer_key := c.customer_key, account_id := c.account_id,
                function := c.function, quantity_micro := c.quantity_micro,
                status := c.status, occurred_at := c.occurred_at_ts
            )
        ) over (partition by c.event_id order by c.line_no) as first_copy
    from checked as c
    where c.business_reason is null
),

deduplicated as (
    select
        r.line_no,
        case
            when e.event_id is not null then
                case
                    when e.customer_key = r.customer_key and e.account_id = r.account_id
                        and e.function = r.function
                        and e.quantity = r.quantity
                        and e.status = r.status and e.occurred_at = r.occurred_at_ts
                        then 'duplicate'
                    else 'duplicate_conflict'
                end
            when r.copy_no > 1 then
                case
                    when r.first_copy = struct_pack(
                        customer_key := r.customer_key, account_id := r.account_id,
                        function := r.function, quantity_micro := r.quantity_micro,
                        status := r.status, occurred_at := r.occurred_at_ts
                    ) then 'duplicate'
                    else 'duplicate_conflict'
                end
        end as duplicate_reason
    from ranked as r
    left join earlier as e using (event_id)
),

decided as (
    select
        c.*,
        coalesce(c.business_reason, d.duplicate_reason) as final_reason,
        case
            when c.status = 'failed' then 0
            else ((c.quantity_micro + c.unit_size_micro - 1) // c.unit_size_micro)
                * c.credits_per_unit
        end as credits
    from checked as c
    left join deduplicated as d using (line_no)
)

select * from decided
