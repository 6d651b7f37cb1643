-- §6: at expires_at (always a local midnight) a pool's remaining credits expire; §7: the
-- revenue not recognised by then is breakage. Expiry is the last step of the billing day.
update pool_days as pd
set
    expired = pd.remaining,
    remaining = 0,
    breakage_cny = p.amount_cny - pd.revenue_cum
from pools as p
where pd.day = $day
    and pd.pool_key = p.pool_key
    and p.expiry_day = $day;

insert into ledger_entries
with expiring as (
    select
        pd.customer_key,
        pd.pool_key,
        p.expires_at,
        pd.expired,
        row_number() over (partition by pd.customer_key order by p.priority) - 1 as rank
    from pool_days as pd
    join pools as p using (pool_key)
    where pd.day = $day and p.expiry_day = $day and pd.expired > 0
),

written as (
    -- the seq after the customer's grants and draws of the day (tasks/deduct.py)
    select customer_key, max(entry_id) + 1 as next_id
    from ledger_entries
    where day = $day and customer_key in (select customer_key from expiring)
    group by customer_key
)

select
    -- entry_id: the layout of tasks/deduct.py, expiries at the end of the customer's day
    coalesce(w.next_id, $day_base + (x.customer_key::bigint << $customer_bits)) + x.rank
        as entry_id,
    $day as day,
    x.customer_key,
    x.pool_key,
    null as event_key,
    x.expires_at as posted_at,
    'expire' as kind,
    x.expired as credits
from expiring as x
left join written as w using (customer_key)
