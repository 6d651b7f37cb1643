-- The customers whose statement of month $month is drafted again on billing day $day
-- (tasks/statements.py): a quiet customer's statement stays as it is, only carried to $day.
--
-- A statement changes only with its customer's figures: a day's movements (granted, used,
-- settled, expired, arrears, events, payments, revenue, breakage; the balances follow from
-- them), a pool starting or expiring (its state, the seats), or the month's opening. So the
-- customers drafted are those with any of these on a day billed since the month's
-- statements were last refreshed — this day, the earlier days of a catch-up or a rebill,
-- the days a killed run billed — plus those with no statement of the month yet. Every
-- customer is drafted when the month has no statement yet, when the previous month's last
-- day (the opening) was billed again since, or when a statement runs past this day (the
-- days after it were unbilled).
create or replace temp table statement_scope as
with refreshed as (
    select max(updated_at) as refreshed_at, max(through_day) as through_day
    from statements
    where month = $month
),

since as (
    select
        least(
            $day,
            (
                select min(b.day)
                from billed_days as b, refreshed as r
                where b.day between $month - 1 and $day - 1 and b.billed_at > r.refreshed_at
            )
        ) as day,
        (select refreshed_at from refreshed) is null as never,
        -- days after this one were billed, then unbilled (a rebill through an earlier day)
        (select through_day from refreshed) > $day as ahead,
        (select through_day from refreshed) as refreshed_through
)

-- `refreshed_through`: the day the month's last refresh ran through (tasks/statements.py
-- sums only the days after it when none up to it was billed again since)
select day, never or ahead or day < $month as every, refreshed_through from since;

create or replace temp table statement_customers as
with scope as (select * from statement_scope)

select c.customer_key
from customer_days as c, scope as s
where c.day = $day and s.every

union

select c.customer_key
from customer_days as c, scope as s
where not s.every
    and c.day between s.day and $day
    and (
        c.granted <> 0 or c.used <> 0 or c.settled <> 0 or c.expired <> 0
        or c.arrears_opened <> 0 or c.rated <> 0 or c.events <> 0
        or c.payments_cny <> 0 or c.revenue_cny <> 0 or c.breakage_cny <> 0
    )

union

-- a pool queued, started or expired at one of the days' cutoffs (one starting exactly at
-- the cutoff counts among the seats: its grant day is the next day)
select p.customer_key
from pools as p, scope as s
where not s.every
    and (p.grant_day between s.day and $day + 1 or p.expiry_day between s.day and $day)

union

-- an order paid on one of the days (one of no amount moves no figure, but shows its pools)
select o.customer_key
from orders as o, scope as s
where not s.every and o.purchase_day between s.day and $day

union

select c.customer_key
from customer_days as c, scope as s
where c.day = $day
    and not s.every
    and not exists (
        select 1 from statement_rows as t
        where t.month = $month and t.customer_key = c.customer_key
    )
