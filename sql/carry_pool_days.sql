-- The pools of the quiet customers (sql/live_pools.sql, temp.day_live_pools: not `busy`)
-- carried to billing day $day as the day before closed them: nothing granted, drawn or settled, so
-- nothing recognised (§7: revenue follows the credits drawn). Expiry comes after.
insert into pool_days
select
    $day as day,
    pool_key,
    customer_key,
    opening,
    0 as granted,
    0 as used,
    0 as settled,
    0 as expired,
    opening as remaining,
    drawn_before as drawn_cum,
    revenue_before as revenue_cum,
    0 as revenue_cny,
    0 as breakage_cny
from temp.day_live_pools as l
where not l.busy
