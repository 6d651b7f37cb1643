-- The usage_days and account_days rows of billing days $first..$last (one day in a run;
-- every billed day when a warehouse from before these tables is opened): the days' events
-- per customer and function, and the accounts that used the service (§8), each on its first
-- day of the month.
insert into usage_days
select
    day,
    customer_key,
    function,
    count(*) filter (where status = 'succeeded') as events,
    count(*) filter (where status <> 'succeeded') as failed_events,
    coalesce(sum(quantity) filter (where status = 'succeeded'), 0) as quantity,
    sum(credits) as credits
from events
where day between $first and $last
group by day, customer_key, function;

-- an account on the first of the days' days it used the service in its month, unless a day
-- before $first in that month had it already (a statement's seats_used counts the month's
-- distinct accounts: a few rows a customer and month instead of one a day)
insert into account_days
with seen as (
    select customer_key, account_id
    from account_days
    where day >= date_trunc('month', $first::date)::date and day < $first
)

select min(e.day) as day, e.customer_key, e.account_id
from events as e
anti join seen as s
    on s.customer_key = e.customer_key
    and s.account_id = e.account_id
    and date_trunc('month', e.day) = date_trunc('month', $first::date)
where e.day between $first and $last
group by date_trunc('month', e.day), e.customer_key, e.account_id
