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
    -- entry_id: day << 47 | customer << 24 | seq, expiries at the end of the customer's day
    (($day - date '2000-01-01')::bigint << 47) | (pd.customer_key::bigint << 24)
        | ((1 << 24) - (1 << 10) + p.priority) as entry_id,
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
