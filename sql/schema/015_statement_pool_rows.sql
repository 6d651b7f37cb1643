-- A month-to-date statement's queued pools (the later periods of a long term, paid for and
-- not started at the cutoff: ~85 % of a month's statement pools with annual subscriptions)
-- are not stored while its month is open: every figure of a queued pool is zero but its
-- deferred amount, and which pools are queued follows from `pools` and `orders`. So a
-- customer drafted again (a grant, an expiry, a day's usage) writes its few started pools,
-- not a year of queued ones. `statement_pool_rows` holds the stored pools: every pool of a
-- statement once its month is final (a final draft stores them all; the month's last refresh
-- stores the derived ones of the statements it makes final: sql/statements.sql), so an issued
-- statement keeps its pools when later orders move them. The view `statement_pools` adds an
-- open month's queued pools as of its last refresh. The table `statement_pools` of a data dir
-- from before is renamed statement_pool_rows just before this file runs (tasks/db.py BEFORE).
-- Re-runnable.

-- a data dir from before stored them: an open month's statements are written to the next
-- delta files without them (tasks/keyed_files.py), and the view derives them; a final month
-- keeps them as issued
create or replace temp table open_queued as
select p.customer_key, p.month, p.revision, p.pool_id
from statement_pool_rows as p
join statement_rows as s using (customer_key, month, revision)
left join statement_months as m on m.month = p.month
where s.status = 'month_to_date' and p.state = 'queued' and not coalesce(m.final, false);

insert or replace into keyed_changes
select distinct 'statements', month, customer_key, false
from open_queued;

delete from statement_pool_rows as p
using open_queued as q
where p.customer_key = q.customer_key and p.month = q.month and p.revision = q.revision
    and p.pool_id = q.pool_id;

drop table open_queued;

update day_files set table_name = 'statement_pool_rows' where table_name = 'statement_pools';

create or replace view statement_pools as
select *
from statement_pool_rows

union all by name

-- an open month's month-to-date statement's queued pools as of the month's last refresh
-- (through_day): the pools not started at its cutoff (grant_day after it) whose order was
-- paid by then (purchase_day) and known then (ingested before the refresh: an order of a run
-- that failed before its statements is not shown before they count it)
select
    s.customer_id,
    s.customer_key,
    s.month,
    s.revision,
    p.pool_id,
    p.order_id,
    o.purchased_at,
    p.source,
    p.product,
    p.period_index,
    p.credits,
    p.amount_cny,
    p.available_from,
    p.expires_at,
    'queued' as state,
    0::bigint as granted,
    0::bigint as opening,
    0::bigint as used,
    0::bigint as settled,
    0::bigint as expired,
    0::bigint as remaining,
    0::decimal(18, 2) as revenue_cny,
    0::decimal(18, 2) as revenue_to_date_cny,
    0::decimal(18, 2) as breakage_cny,
    p.amount_cny as deferred_cny
from statement_rows as s
left join statement_months as m using (month)
join pools as p
    on p.customer_key = s.customer_key
    and p.grant_day > coalesce(m.through_day, s.through_day)
join (
    select
        customer_key,
        order_id,
        min(purchased_at) as purchased_at,
        min(purchase_day) as purchase_day,
        min(ingested_at) as ingested_at
    from orders
    group by customer_key, order_id
) as o
    on o.customer_key = p.customer_key
    and o.order_id = p.order_id
    and o.purchase_day <= coalesce(m.through_day, s.through_day)
    and o.ingested_at <= coalesce(m.refreshed_at, s.updated_at)
where s.status = 'month_to_date' and not coalesce(m.final, false);

comment on table statement_pool_rows is 'The stored pools of each statement revision (every pool once its month is final; an open month''s queued pools are derived by the view statement_pools); internal';
comment on view statement_pools is 'One row per statement and pool: every pool paid for by the statement''s cutoff that had not expired when the month began, with its figures over the month';
comment on column statement_pools.state is 'queued (not started at the cutoff), active or expired';
comment on column statement_pools.granted is 'Credits granted in the month';
comment on column statement_pools.opening is 'Credits held at the month''s start (or at the grant)';
comment on column statement_pools.used is 'Credits drawn by the month''s events';
comment on column statement_pools.settled is 'Credits drawn in the month to pay arrears';
comment on column statement_pools.expired is 'Credits expired in the month';
comment on column statement_pools.remaining is 'Credits held at the close (0 while queued)';
comment on column statement_pools.revenue_cny is 'Revenue recognised in the month, CNY';
comment on column statement_pools.revenue_to_date_cny is 'Revenue recognised up to the close, CNY';
comment on column statement_pools.breakage_cny is 'Breakage recognised in the month, CNY';
comment on column statement_pools.deferred_cny is 'amount_cny - revenue_to_date_cny - breakage_cny at the close, CNY';
