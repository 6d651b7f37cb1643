-- A quiet customer's month-to-date statement is carried to the day without being written
-- again (tasks/statements.py): `statement_rows` holds each statement as it was last drafted,
-- `statement_months` the month's last refresh (the day it ran through, when, final or not),
-- and the view `statements` shows a month-to-date revision as of that refresh. So a
-- day rewrites the statements that changed, not a million carried ones.
-- The table `statements` of a data dir from before is renamed statement_rows just before this
-- file runs (tasks/db.py BEFORE: SQL cannot say "if it is still a table"). Re-runnable.

create table if not exists statement_months (
    month date primary key,
    through_day date,                -- the last billing day of the month's last refresh
    final boolean,                   -- that refresh was on the month's last day: its
                                     -- month-to-date statements are final, for good
    refreshed_at timestamptz         -- when
);

-- a data dir from before: every month-to-date statement was carried to its month's last
-- refresh (through_day, updated_at) and made final with it
insert into statement_months
select month, max(through_day), bool_and(status = 'final'), max(updated_at)
from statement_rows
group by month
on conflict do nothing;

-- their day files: the statements' files are statement_rows', each month's file its base
update day_files set table_name = 'statement_rows' where table_name = 'statements';
update day_files set part = 'base'
where part is null and table_name in ('statement_rows', 'statement_lines', 'statement_pools');

create or replace view statements as
select
    s.* replace (
        case
            when s.status = 'month_to_date' then coalesce(m.through_day, s.through_day)
            else s.through_day
        end as through_day,
        case
            when s.status = 'month_to_date' and m.final then 'final' else s.status
        end as status,
        case
            when s.status = 'month_to_date' then coalesce(m.refreshed_at, s.updated_at)
            else s.updated_at
        end as updated_at
    )
from statement_rows as s
left join statement_months as m using (month);

comment on table statement_rows is 'Each statement revision as last drafted (the view statements shows month-to-date ones as of the month''s last refresh); internal';
comment on table statement_months is 'Each month''s last statement refresh: the day it ran through, when, final or not; internal';
comment on view statements is 'One row per customer, month and revision: the monthly statement (§8)';
comment on column statements.month is 'First day of the month';
comment on column statements.revision is '1, 2, ...: a final statement changed by late data gets a new revision';
comment on column statements.status is 'month_to_date or final';
comment on column statements.opening_balance is 'Credits at the start of the month';
comment on column statements.closing_balance is 'opening + granted - used - arrears_settled - expired';
comment on column statements.payments_cny is 'CNY paid for pools granted in the month';
comment on column statements.revenue_cny is 'Revenue recognised in the month, CNY';
comment on column statements.breakage_cny is 'Breakage recognised in the month, CNY';
comment on column statements.deferred_cny is 'Revenue deferred at the close, CNY';
comment on column statements.seats_entitled is 'Accounts the customer''s live products entitle';
comment on column statements.seats_used is 'Distinct account_ids with events in the month';
comment on column statements.customer_id is 'The customer';
comment on column statements.granted is 'Credits granted in the month (sum of customer_days.granted)';
comment on column statements.used is 'Credits drawn by the month''s events';
comment on column statements.expired is 'Credits expired in the month';
comment on column statements.arrears_opened is 'Credits of the month''s events no pool covered';
comment on column statements.arrears_settled is 'Arrears paid from pools in the month';
comment on column statements.arrears_outstanding is 'Arrears not settled at the close';

create or replace view latest_statements as
select s.*
from statements as s
qualify s.revision = max(s.revision) over (partition by s.customer_key, s.month);
