-- One row per customer and billing day $day (interfaces.md): credits granted, used, settled,
-- expired, arrears, the balance at the cutoff, and the day's money (§7). Figured for the
-- customers with anything on the day (a pool granted, drawn, settled or expired, arrears,
-- events, a payment) or no row the day before; every other customer's row is the day
-- before's carried: nothing moved, so its balances and deferred revenue stand.
create or replace temp table moved_customers as
select customer_key from pool_days
where day = $day
    and (granted <> 0 or used <> 0 or settled <> 0 or expired <> 0
        or revenue_cny <> 0 or breakage_cny <> 0)
union
select customer_key from ledger_entries where day = $day and kind = 'arrears'
union
select customer_key from events where day = $day
union
select customer_key from orders where purchase_day = $day;

insert into customer_days by name
select
    p.* replace (
        $day as day, 0 as granted, 0 as used, 0 as settled, 0 as expired,
        0 as arrears_opened, 0 as rated, 0 as events, 0 as payments_cny, 0 as revenue_cny,
        0 as breakage_cny
    )
from customer_days as p
anti join moved_customers as m using (customer_key)
where p.day = $day - 1;

with bounds as (
    select local_midnight($tz, $day + 1) as cutoff
),

arrears as (
    select customer_key, sum(credits) as arrears_opened
    from ledger_entries
    where day = $day and kind = 'arrears'
    group by customer_key
),

rated as (
    select customer_key, sum(credits) as rated, count(*) as events
    from events
    where day = $day
    group by customer_key
),

payments as (
    select customer_key, sum(amount_cny) as payments_cny
    from orders
    where purchase_day = $day
    group by customer_key
),

previous as (
    select customer_key, arrears_outstanding, deferred_cny
    from customer_days
    where day = $day - 1
),

listed as (
    -- customers with an order purchased before the cutoff, or usage today: of them, the
    -- ones with anything on the day, and the ones without a row the day before (the rest
    -- are carried above)
    select customer_key from moved_customers
    union
    -- (every customer with an order purchased before the day before's cutoff has a row
    -- that day when it was billed: then only the day's orders can add one, and they are
    -- among moved_customers; so the orders are read only when it was not billed)
    select o.customer_key
    from orders as o, bounds as b
    where o.purchased_at < b.cutoff
        and not exists (select 1 from billed_days where day = $day - 1)
        and not exists (select 1 from previous as p where p.customer_key = o.customer_key)
),

pool_figures as (
    select
        customer_key,
        sum(granted) as granted,
        sum(used) as used,
        sum(settled) as settled,
        sum(expired) as expired,
        sum(remaining) as balance,
        sum(revenue_cny) as revenue_cny,
        sum(breakage_cny) as breakage_cny
    from pool_days
    where day = $day and customer_key in (select customer_key from listed)
    group by customer_key
),

figures as (
    select
        k.customer_id,
        l.customer_key,
        $day as day,
        coalesce(f.granted, 0) as granted,
        coalesce(f.used, 0) as used,
        coalesce(f.settled, 0) as settled,
        coalesce(f.expired, 0) as expired,
        coalesce(a.arrears_opened, 0) as arrears_opened,
        coalesce(p.arrears_outstanding, 0) + coalesce(a.arrears_opened, 0)
            - coalesce(f.settled, 0) as arrears_outstanding,
        coalesce(f.balance, 0) as balance,
        coalesce(r.rated, 0) as rated,
        coalesce(r.events, 0) as events,
        coalesce(m.payments_cny, 0) as payments_cny,
        coalesce(f.revenue_cny, 0) as revenue_cny,
        coalesce(f.breakage_cny, 0) as breakage_cny,
        coalesce(p.deferred_cny, 0) + coalesce(m.payments_cny, 0)
            - coalesce(f.revenue_cny, 0) - coalesce(f.breakage_cny, 0) as deferred_cny
    from listed as l
    join customers as k using (customer_key)
    left join pool_figures as f using (customer_key)
    left join arrears as a using (customer_key)
    left join rated as r using (customer_key)
    left join payments as m using (customer_key)
    left join previous as p using (customer_key)
)

insert into customer_days by name
select * from figures;

drop table moved_customers
