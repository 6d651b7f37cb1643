-- Pools live during billing day $day for one shard of customers, with what they hold at
-- the day's start: the previous day's close, or their full credits when granted today.
with bounds as (
    select
        timezone($tz, $day::timestamp) as day_start,
        timezone($tz, ($day + 1)::timestamp) as cutoff
),

live as (
    select p.*
    from pools as p, bounds as b
    where p.available_from < b.cutoff
        and p.expires_at > b.day_start
        and p.$shard_filter
),

carried as (
    select pool_key, remaining, drawn_cum, revenue_cum
    from pool_days
    where day = $day - 1
)

select
    l.pool_key,
    l.customer_key,
    l.priority,
    epoch_us(l.available_from) as available_from_us,
    l.credits,
    l.amount_cny,
    case when l.grant_day = $day then l.credits else 0 end as granted,
    coalesce(c.remaining, l.credits) as opening,
    coalesce(c.drawn_cum, 0) as drawn_before,
    coalesce(c.revenue_cum, 0) as revenue_before
from live as l
left join carried as c using (pool_key)
