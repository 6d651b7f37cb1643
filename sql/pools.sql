-- Credit pools of every accepted order (billing-rules §4): one per 30-day period of a
-- subscription (from its start S, renewals queued), one per package.
with starts as (
    select
        o.*,
        s.start_at,
        timezone($tz, s.start_at)::date as start_date
    from orders as o
    join order_starts as s using (order_key)
),

subscription_periods as (
    select
        st.*,
        k.period_index,
        -- period 0 starts at S; later periods at local midnight of date(S) + 30k days
        case
            when k.period_index = 0 then st.start_at
            else local_midnight($tz, st.start_date + cast($period_days * k.period_index as integer))
        end as available_from,
        local_midnight($tz, st.start_date + cast($period_days * (k.period_index + 1) as integer))
            as expires_at
    from starts as st
    cross join unnest(range(st.term_months)) as k(period_index)
    where st.source = 'subscription'
),

package_periods as (
    select
        st.*,
        0 as period_index,
        st.start_at as available_from,
        -- 12 calendar months on, the day clamped to the month's end (2028-02-29 -> 2029-02-28)
        local_midnight($tz, (st.start_date + to_months($package_months))::date) as expires_at
    from starts as st
    where st.source = 'package'
),

periods as (
    select * from subscription_periods
    union all by name
    select * from package_periods
),

keyed as (
    -- a pool keeps its key across rebuilds; a new pool takes the next free one, so no term
    -- length or order count can make two pools share a key
    select
        p.*,
        p.order_id || '#' || p.period_index as pool_id,
        coalesce(
            k.pool_key,
            (select coalesce(max(pool_key), 0) from pools)
                + row_number() over (
                    partition by k.pool_key is null order by p.order_key, p.period_index
                )
        ) as pool_key
    from periods as p
    left join (
        -- (the scope's customers' pools, picked by key before their order ids are compared)
        select pool_key, order_id, period_index
        from pools
        where customer_key in (select customer_key from starts)
    ) as k on k.order_id = p.order_id and k.period_index = p.period_index
),

pooled as (
    select
        p.pool_key,
        p.pool_id,
        p.customer_key,
        p.customer_id,
        p.order_id,
        p.source,
        p.product,
        p.period_index,
        c.credits,
        c.unit_price_cny as amount_cny,
        p.available_from,
        p.expires_at,
        timezone($tz, p.available_from)::date as grant_day,
        timezone($tz, p.expires_at)::date - 1 as expiry_day,
        -- §5: subscriptions first, then earlier expiry, earlier start, pool_id
        row_number() over (
            partition by p.customer_key
            order by p.source = 'package', p.expires_at, p.available_from, p.pool_id
        ) as priority,
        c.seats,
        c.credits as remaining,
        c.version_id as catalog_version
    from keyed as p
    -- the price and credits the order was accepted at (sql/schema/006_catalog_versions.sql)
    join order_prices as c using (order_key)
)

select * from pooled
