-- account_days holds an account on the first day of each month it used the service (it held
-- one row per day): a statement's seats_used, the month's distinct accounts, then reads a few
-- rows a customer and month, not a month of days (sql/usage_days.sql writes them so). The
-- rows of the days the working database holds are thinned here and those days written to
-- their day files again (day_changes); the days only in day files keep every day's rows,
-- which give the same distinct accounts. Re-runnable (a second pass finds nothing to thin).
create or replace temp table account_repeats as
select day, customer_key, account_id
from (
    select
        *,
        min(day) over (
            partition by customer_key, account_id, date_trunc('month', day)
        ) as first_day
    from account_days
)
where day > first_day;

insert into day_changes
select distinct day from account_repeats;

delete from account_days as a
using account_repeats as r
where a.day = r.day and a.customer_key = r.customer_key and a.account_id = r.account_id;

drop table account_repeats;

comment on table account_days is 'Each account with accepted events on the first day of a month it had any (a statement''s seats_used counts a month''s distinct accounts)';
