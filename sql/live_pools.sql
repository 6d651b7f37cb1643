-- Pools live during billing day $day for one shard of customers, with what they hold at
-- the day's start: the previous day's close, or their full credits when granted today; and
-- whether their customer is `busy`: has charged events today, arrears carried in, or a pool
-- granted today or without a close of the day before. Only a busy customer's pools can be
-- drawn or granted today (tasks/deduct.py draws them); a quiet customer's are carried to
-- the day as they stand (sql/carry_pool_days.sql).
with bounds as (
    select
        local_midnight($tz, $day) as day_start,
        local_midnight($tz, $day + 1) as cutoff
),

live as (
    select p.*
    from pools as p, bounds as b
    where p.available_from < b.cutoff
        and p.expires_at > b.day_start
        and $shard_filter
),

carried as (
    select pool_key, remaining, drawn_cum, revenue_cum
    from pool_days
    where day = $day - 1
),

opened as materialized (
    -- (materialized: the live pools are joined with the day before's close once, not once
    -- for `busy` and once for the result — a million customers' pools)
    select l.*, c.pool_key is not null as closed_before, c.remaining as closed_remaining,
        c.drawn_cum as closed_drawn, c.revenue_cum as closed_revenue
    from live as l
    left join carried as c using (pool_key)
),

busy as (
    select customer_key from events
    where day = $day and credits > 0 and $shard_filter
    union
    select customer_key from customer_days
    where day = $day - 1 and arrears_outstanding > 0 and $shard_filter
    union
    select customer_key
    from opened
    where grant_day = $day or not closed_before
)

select
    l.pool_key,
    l.customer_key,
    l.priority,
    epoch_us(l.available_from) as available_from_us,
    l.credits,
    l.amount_cny,
    case when l.grant_day = $day then l.credits else 0 end as granted,
    coalesce(l.closed_remaining, l.credits) as opening,
    coalesce(l.closed_drawn, 0) as drawn_before,
    coalesce(l.closed_revenue, 0) as revenue_before,
    l.customer_key in (select customer_key from busy) as busy
from opened as l
