-- A warehouse billed before usage_days and account_days existed (003) gets theirs for every
-- billed day, once, from the stored events; from then on each billed day writes its own
-- (sql/usage_days.sql). A frozen copy of that file's queries as they stood when the tables
-- came: later changes to it reach billed days when they are billed again. Nothing to do for
-- a new warehouse (no billed days) or one whose tables already hold rows.
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
where
    day between (select min(day) from billed_days) and (select max(day) from billed_days)
    and not exists (select 1 from usage_days)
group by day, customer_key, function;

insert into account_days
select distinct day, customer_key, account_id
from events
where
    day between (select min(day) from billed_days) and (select max(day) from billed_days)
    and not exists (select 1 from account_days);
