-- Statements of month $month through the billing day, from the drafts (billing-rules §8):
-- a month-to-date revision is refreshed in place; a final one is never touched again, a
-- changed final statement gets the next revision beside it. Only the drafted customers'
-- statement_rows are written; the month's refresh (statement_months) carries the others
-- (the view `statements`, sql/schema/012).
create or replace temp table statement_revisions as
with latest as (
    select
        customer_key,
        max(revision) as revision,
        arg_max(status, revision) as status,
        arg_max(fingerprint, revision) as fingerprint,
        arg_max(created_at, revision) as created_at
    from statements
    where month = $month and customer_key in (select customer_key from statement_drafts)
    group by customer_key
),

statement_revisions as (
    select
        d.customer_key,
        case
            when l.revision is null then 1
            when l.status = 'month_to_date' then l.revision
            else l.revision + 1
        end as revision,
        case when l.status = 'month_to_date' then l.created_at else now() end as created_at
    from statement_drafts as d
    left join latest as l using (customer_key)
    where l.revision is null
        or l.status = 'month_to_date'
        -- a final statement is revised only when the month's last day is billed again
        or ($final and d.fingerprint is distinct from l.fingerprint)
)

select * from statement_revisions;

delete from statement_rows as s
using statement_revisions as r
where s.month = $month and s.customer_key = r.customer_key and s.revision = r.revision;

delete from statement_lines as s
using statement_revisions as r
where s.month = $month and s.customer_key = r.customer_key and s.revision = r.revision;

delete from statement_pool_rows as s
using statement_revisions as r
where s.month = $month and s.customer_key = r.customer_key and s.revision = r.revision;

insert into statement_rows by name
select
    d.*,
    r.revision,
    case when $final then 'final' else 'month_to_date' end as status,
    r.created_at,
    now() as updated_at
from statement_drafts as d
join statement_revisions as r using (customer_key);

insert into statement_lines by name
select l.*, $month as month, r.revision
from statement_line_drafts as l
join statement_revisions as r using (customer_key);

-- a month-to-date statement's queued pools are not stored (the view statement_pools derives
-- them: sql/schema/015); a final one keeps every pool as issued
insert into statement_pool_rows by name
select p.*, $month as month, r.revision
from statement_pool_drafts as p
join statement_revisions as r using (customer_key)
where $final or p.state <> 'queued';

-- the month's last refresh makes the month-to-date statements not drafted again final as they
-- stand: their queued pools, derived while the month was open (the view statement_pools,
-- sql/schema/015; an open month stores none), are stored as issued before the month is
-- marked final (once: a final month's are stored already)
create or replace temp table issued_queued as
select p.*
from statement_pools as p
join statement_rows as s using (customer_key, month, revision)
where $final and p.month = $month and p.state = 'queued' and s.status = 'month_to_date'
    and not exists (select 1 from statement_months as m where m.month = $month and m.final);

insert into statement_pool_rows by name
select * from issued_queued;

insert or replace into keyed_changes
select distinct 'statements', $month, customer_key, false
from issued_queued;

drop table issued_queued;

-- the month's refresh: its month-to-date statements (of the customers not drafted again
-- too: statement_customers, nothing of theirs changed) run through this day, final on the
-- month's last; a final month stays as it was finalised
insert into statement_months
values ($month, $day, $final, now())
on conflict (month) do update set
    through_day = excluded.through_day,
    final = excluded.final,
    refreshed_at = excluded.refreshed_at
where not statement_months.final;

-- the statements written, for the month's next delta file (tasks/day_files.py)
insert or replace into keyed_changes
select 'statements', $month, customer_key, false
from statement_revisions;
