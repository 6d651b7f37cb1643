-- The net balance at the cutoff of billing day $day (billing-rules §9) of every listed
-- customer whose standing can have changed since the day before, with the credits rated
-- over the last 7 days; suspensions and at_risk read it.
create or replace temp table net_balances as
with bounds as (
    select local_midnight($tz, $day + 1) as cutoff
),

candidates as (
    -- the customers whose standing can differ from the day before's: anything moved on
    -- the day (a grant, a draw, a settlement, an expiry, arrears, a payment), usage over
    -- the 7 days (at risk), an order purchased on the day, no row the day before, or on
    -- the day before's suspension list. Any other customer is quiet: its balance, arrears
    -- and 7 days' use stand as the day before, when it was neither suspended nor at risk
    -- (so a quiet million costs nothing here). Every customer when the day before was
    -- not billed (its list is not there to stand on).
    select customer_key
    from customer_days
    where day = $day
        and (
            granted <> 0 or used <> 0 or settled <> 0 or expired <> 0 or arrears_opened <> 0
            or payments_cny <> 0 or not exists (select 1 from billed_days where day = $day - 1)
        )
    union
    select customer_key from customer_days where day between $day - 6 and $day and rated <> 0
    union
    select customer_key from orders where purchase_day = $day
    union
    select customer_key from suspensions where day = $day - 1
    union
    (
        select customer_key from customer_days where day = $day
        except
        select customer_key from customer_days where day = $day - 1
    )
),

listed as (
    -- only customers with an accepted order purchased before the cutoff (§9)
    select distinct o.customer_key
    from orders as o, bounds as b
    where o.purchased_at < b.cutoff
        and o.customer_key in (select customer_key from candidates)
),

valid_pools as (
    -- pools valid at the cutoff (§9): the ones available during the day hold what they hold
    -- at its close, after expiry (customer_days.balance: those expiring at the cutoff hold
    -- nothing by then); those starting exactly at the cutoff count in full
    select customer_key, sum(credits) as valid_credits
    from (
        select customer_key, balance as credits
        from customer_days
        where day = $day and customer_key in (select customer_key from listed)
        union all
        select p.customer_key, p.credits
        from pools as p, bounds as b
        where p.available_from = b.cutoff
            and p.customer_key in (select customer_key from listed)
    )
    group by customer_key
),

arrears as (
    select customer_key, arrears_outstanding
    from customer_days
    where day = $day and customer_key in (select customer_key from listed)
),

rated_7d as (
    select customer_key, sum(rated) as total_rated_7d
    from customer_days
    where day between $day - 6 and $day and rated <> 0
    group by customer_key
),

net_balances as (
    select
        l.customer_key,
        k.customer_id,
        coalesce(v.valid_credits, 0) as valid_credits,
        coalesce(a.arrears_outstanding, 0) as arrears_outstanding,
        coalesce(v.valid_credits, 0) - coalesce(a.arrears_outstanding, 0) as net_balance,
        coalesce(r.total_rated_7d, 0) as total_rated_7d
    from listed as l
    join customers as k using (customer_key)
    left join valid_pools as v using (customer_key)
    left join arrears as a using (customer_key)
    left join rated_7d as r using (customer_key)
)

select * from net_balances
