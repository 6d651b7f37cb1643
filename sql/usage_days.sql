-- The usage_days and account_days rows of billing days $first..$last (one day in a run;
-- every billed day when a warehouse from before these tables is opened): the days' events
-- per customer and function, and the accounts that used the service (§8).
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

insert into account_days
select distinct day, customer_key, account_id
from events
where day between $first and $last
