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
select
    -- entry_id: the layout of tasks/deduct.py, expiries at the end of the customer's day
    $day_base + (pd.customer_key::bigint << $customer_bits) + $expire_seq + p.priority
        as entry_id,
    $day as day,
    pd.customer_key,
    pd.pool_key,
    null as event_key,
    p.expires_at as posted_at,
    'expire' as kind,
    pd.expired as credits
from pool_days as pd
join pools as p using (pool_key)
where pd.day = $day and p.expiry_day = $day and pd.expired > 0;
