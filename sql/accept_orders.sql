-- Business checks of validated order rows (billing-rules §3): the first failing rule names
-- the reason; `duplicate` marks an exact re-delivery of an order already accepted.
with rows as (
    select
        r.*,
        try_cast(r.term_months as integer) as term,
        -- exact (tasks/validate.py lets through up to 15 digits and 18 decimal places): an
        -- amount of more fen than the price is wrong_amount, never rounded to it
        try_cast(r.amount_cny as decimal(38, 18)) as amount,
        timezone($tz, r.purchased_at_ts)::date as purchase_day,
        -- bought exactly at a local midnight: its pool counts in the day before's list (§9)
        timezone($tz, r.purchased_at_ts)::time = time '00:00:00' as at_midnight
    from order_rows as r
),

priced as (
    select
        r.*,
        p.source,
        p.unit_price_cny,
        p.version_id,
        e.terms_months
    from rows as r
    -- the price in force at purchased_at (every product has one at every instant)
    left join catalog_products as p
        on p.product = r.product
        and r.purchased_at_ts >= coalesce(p.effective_from, '-infinity'::timestamptz)
        and r.purchased_at_ts < coalesce(p.effective_until, 'infinity'::timestamptz)
    left join catalog_editions as e on e.version_id = p.version_id
),

checked as (
    select
        p.*,
        case
            when p.reason is not null then p.reason
            -- §3 "Time window": dated after today + 1 day
            when p.purchase_day > $last_day then 'in_future'
            when p.source is null then 'unknown_product'
            when p.source = 'subscription'
                and (p.term is null or not list_contains(p.terms_months, p.term)) then 'bad_term'
            when p.source = 'package' and p.term is not null then 'bad_term'
            when p.amount <> cast(p.unit_price_cny as decimal(38, 2))
                * cast(coalesce(p.term, 1) as decimal(38, 0)) then 'wrong_amount'
        end as business_reason,
        -- decided after the duplicate check: a re-delivered billed order is a duplicate
        p.purchase_day < $late_before as too_late
    from priced as p
),

ranked as (
    -- a file's copies of an order_id compared with its first copy that can stand: a copy
    -- too late is never accepted, so a later copy in the window is not its duplicate (nor
    -- its conflict); copies too late are compared among themselves (a repeat: `duplicate`)
    select
        c.*,
        row_number() over (partition by c.order_id, c.too_late order by c.line_no) as copy_no,
        first_value(
            struct_pack(customer_id := c.customer_id, product := c.product, term := c.term,
                        amount := c.amount, purchased_at := c.purchased_at_ts)
        ) over (partition by c.order_id, c.too_late order by c.line_no) as first_copy
    from checked as c
    where c.business_reason is null
),

deduplicated as (
    select
        r.line_no,
        case
            when o.order_id is not null then
                case
                    when o.customer_id = r.customer_id and o.product = r.product
                        and o.term_months is not distinct from r.term and o.amount_cny = r.amount
                        and o.purchased_at = r.purchased_at_ts then 'duplicate'
                    else 'duplicate_conflict'
                end
            when r.copy_no > 1 then
                case
                    when r.first_copy = struct_pack(
                        customer_id := r.customer_id, product := r.product, term := r.term,
                        amount := r.amount, purchased_at := r.purchased_at_ts
                    ) then 'duplicate'
                    else 'duplicate_conflict'
                end
        end as duplicate_reason
    from ranked as r
    left join orders as o using (order_id)
),

decided as (
    select
        c.*,
        case
            when c.business_reason is not null then c.business_reason
            when d.duplicate_reason = 'duplicate' then 'duplicate'
            when c.too_late then 'too_late'
            else d.duplicate_reason
        end as final_reason
    from checked as c
    left join deduplicated as d using (line_no)
)

select * from decided
