-- Draft statements of month $month through billing day $day (billing-rules §8): usage
-- lines per function, the pools behind the balances, and each customer's figures summed
-- from customer_days, for the customers of `statement_customers`
-- (sql/statement_customers.sql). tasks/statements.py decides which drafts become revisions.
--
-- $first is the first day summed: the month's first, or (tasks/statements.py) the first day
-- after the month's last refresh when no day up to it was billed again since — then the
-- drafts add the days from $first to the statements as they stand (`carried`), so a month's
-- last day sums one day, not the month.
create or replace temp table statement_line_drafts as
with carried as (
    select customer_key, function, events, failed_events, quantity, credits
    from statement_lines
    where month = $month and $first > $month
        and customer_key in (select customer_key from statement_customers)
    qualify revision = max(revision) over (partition by customer_key)
),

lines as (
    -- the month's usage, from each billed day's figures (usage_days), not its events
    select
        customer_key,
        function,
        sum(events) as events,
        sum(failed_events) as failed_events,
        cast(sum(quantity) as decimal(38, 6)) as quantity,
        sum(credits) as credits
    from (
        select customer_key, function, events, failed_events, quantity, credits
        from usage_days
        where day between $first and $day
            and customer_key in (select customer_key from statement_customers)
        union all
        select * from carried
    )
    group by customer_key, function
)

select k.customer_id, l.*
from lines as l
join customers as k using (customer_key);

create or replace temp table statement_pool_drafts as
with bounds as (
    select
        local_midnight($tz, $month) as month_start,
        local_midnight($tz, $day + 1) as cutoff
),

paid as (
    select o.customer_key, o.order_id, min(o.purchased_at) as purchased_at
    from orders as o, bounds as b
    where o.purchased_at < b.cutoff
        and o.customer_key in (select customer_key from statement_customers)
    group by o.customer_key, o.order_id
),

shown as (
    -- pools paid for by the cutoff that had not expired when the month began
    select p.*, paid.purchased_at
    from pools as p
    join paid using (customer_key, order_id)
    cross join bounds as b
    where p.expires_at > b.month_start
        -- (the drafted customers' pools picked by key before their text columns are read:
        -- a million customers' pools are not all read for the day's few)
        and p.customer_key in (select customer_key from statement_customers)
),

carried_pools as (
    -- the pools as the statements stand, as of the day before $pools_first (like $first; the
    -- month's first while the month is young: tasks/statements.py): a pool without a day in
    -- the month before $pools_first stands at zero, and its first day after (its grant)
    -- opens at zero as well; so does a queued pool, which a month-to-date statement does not
    -- store (sql/schema/015)
    select
        customer_key, pool_id, granted, opening, used, settled, expired, remaining,
        revenue_cny, revenue_to_date_cny, breakage_cny
    from statement_pool_rows
    where month = $month and $pools_first > $month
        and customer_key in (select customer_key from statement_customers)
    qualify revision = max(revision) over (partition by customer_key)
),

month_figures as (
    -- the days from $pools_first: the month's, or the ones after the statements as they stand
    select
        pool_key,
        sum(granted) as granted,
        arg_min(opening - granted, day) as opening,
        sum(used) as used,
        sum(settled) as settled,
        sum(expired) as expired,
        arg_max(remaining, day) as remaining,
        sum(revenue_cny) as revenue_cny,
        arg_max(revenue_cum, day) as revenue_to_date_cny,
        sum(breakage_cny) as breakage_cny
    from pool_days
    where day between $pools_first and $day
        and customer_key in (select customer_key from statement_customers)
    group by pool_key
),

pool_lines as (
    select
        s.customer_id, s.customer_key, s.pool_key, s.pool_id, s.order_id, s.purchased_at,
        s.source, s.product,
        s.period_index, s.credits, s.amount_cny, s.available_from, s.expires_at,
        case
            when s.available_from >= b.cutoff then 'queued'
            when s.expires_at <= b.cutoff then 'expired'
            else 'active'
        end as state,
        coalesce(c.granted, 0) + coalesce(f.granted, 0) as granted,
        coalesce(c.opening, f.opening, 0) as opening,
        coalesce(c.used, 0) + coalesce(f.used, 0) as used,
        coalesce(c.settled, 0) + coalesce(f.settled, 0) as settled,
        coalesce(c.expired, 0) + coalesce(f.expired, 0) as expired,
        coalesce(f.remaining, c.remaining, 0) as remaining,
        coalesce(c.revenue_cny, 0) + coalesce(f.revenue_cny, 0) as revenue_cny,
        coalesce(f.revenue_to_date_cny, c.revenue_to_date_cny, 0) as revenue_to_date_cny,
        coalesce(c.breakage_cny, 0) + coalesce(f.breakage_cny, 0) as breakage_cny
    from shown as s
    cross join bounds as b
    left join month_figures as f using (pool_key)
    left join carried_pools as c on c.customer_key = s.customer_key and c.pool_id = s.pool_id
)

-- §7 per pool: revenue to date + breakage + deferred = amount paid
select
    * exclude (pool_key),
    amount_cny - revenue_to_date_cny - breakage_cny as deferred_cny
from pool_lines;

create or replace temp table statement_drafts as
with bounds as (
    select local_midnight($tz, $day + 1) as cutoff
),

opening as (
    -- the balances at the previous month's close
    select customer_key, balance, arrears_outstanding, deferred_cny
    from customer_days
    where day = $month - 1 and customer_key in (select customer_key from statement_customers)
),

carried as (
    -- the statements as they stand, as of the day before $first (see the top)
    select
        customer_key, customer_id, $first - 1 as day, granted, used, expired, arrears_opened,
        arrears_settled as settled, arrears_outstanding, closing_balance as balance, rated,
        events, payments_cny, revenue_cny, breakage_cny, deferred_cny, seats_used
    from statement_rows
    where month = $month and $first > $month
        and customer_key in (select customer_key from statement_customers)
    qualify revision = max(revision) over (partition by customer_key)
),

days as (
    select
        customer_key, customer_id, day, granted, used, expired, arrears_opened, settled,
        arrears_outstanding, balance, rated, events, payments_cny, revenue_cny, breakage_cny,
        deferred_cny
    from customer_days
    where day between $first and $day
        and customer_key in (select customer_key from statement_customers)
    union all
    select * exclude (seats_used) from carried
),

totals as (
    select
        customer_key,
        any_value(customer_id) as customer_id,
        sum(granted) as granted,
        sum(used) as used,
        sum(expired) as expired,
        sum(arrears_opened) as arrears_opened,
        sum(settled) as arrears_settled,
        arg_max(arrears_outstanding, day) as arrears_outstanding,
        arg_max(balance, day) as closing_balance,
        sum(rated) as rated,
        sum(events) as events,
        sum(payments_cny) as payments_cny,
        sum(revenue_cny) as revenue_cny,
        sum(breakage_cny) as breakage_cny,
        arg_max(deferred_cny, day) as deferred_cny
    from days
    group by customer_key
),

entitled as (
    -- seats (§8): the highest active edition's + every active package's, at the cutoff
    select
        p.customer_key,
        coalesce(max(p.seats) filter (where p.source = 'subscription'), 0)
            + coalesce(sum(p.seats) filter (where p.source = 'package'), 0) as seats_entitled
    from pools as p, bounds as b
    where p.available_from <= b.cutoff and b.cutoff < p.expires_at
        and p.customer_key in (select customer_key from statement_customers)
    group by p.customer_key
),

accounts as (
    -- account_days holds an account on its first day of the month (sql/usage_days.sql): the
    -- ones after $first are new to the statement as it stands
    select customer_key, sum(seats_used) as seats_used
    from (
        select customer_key, count(distinct account_id) as seats_used
        from account_days
        where day between $first and $day
            and customer_key in (select customer_key from statement_customers)
        group by customer_key
        union all
        select customer_key, seats_used from carried
    )
    group by customer_key
),

figures as (
    select
        t.customer_id,
        t.customer_key,
        $month as month,
        $day as through_day,
        coalesce(o.balance, 0) as opening_balance,
        t.granted,
        t.used,
        t.expired,
        coalesce(o.arrears_outstanding, 0) as arrears_opening,
        t.arrears_opened,
        t.arrears_settled,
        t.arrears_outstanding,
        t.closing_balance,
        t.rated,
        t.events,
        cast(t.payments_cny as decimal(18, 2)) as payments_cny,
        cast(t.revenue_cny as decimal(18, 2)) as revenue_cny,
        cast(t.breakage_cny as decimal(18, 2)) as breakage_cny,
        coalesce(o.deferred_cny, 0) as deferred_opening_cny,
        t.deferred_cny,
        cast(coalesce(e.seats_entitled, 0) as integer) as seats_entitled,
        cast(coalesce(a.seats_used, 0) as integer) as seats_used
    from totals as t
    left join opening as o using (customer_key)
    left join entitled as e using (customer_key)
    left join accounts as a using (customer_key)
),

line_texts as (
    select
        customer_key,
        string_agg(
            concat_ws(',', function, events, failed_events, quantity, credits), ';'
            order by function
        ) as lines
    from statement_line_drafts
    group by customer_key
),

pool_texts as (
    -- the pools' texts in pool_id order: a list sorted by (pool_id, text), not an ordered
    -- string_agg (twice as fast with a million customers; the same text)
    select
        customer_key,
        array_to_string(
            list_transform(
                list_sort(list({
                    'pool_id': pool_id,
                    'text': concat_ws(
                        ',', pool_id, state, granted, opening, used, settled, expired,
                        remaining, revenue_cny, revenue_to_date_cny, breakage_cny, deferred_cny
                    )
                })),
                lambda p: p.text
            ),
            ';'
        ) as pools
    from statement_pool_drafts
    group by customer_key
),

statement_drafts as (
    -- the fingerprint tells whether a final statement changed (then: a new revision)
    select
        f.*,
        md5(concat_ws(
            '|', f.opening_balance, f.granted, f.used, f.expired, f.arrears_opening,
            f.arrears_opened, f.arrears_settled, f.arrears_outstanding, f.closing_balance,
            f.rated, f.events, f.payments_cny, f.revenue_cny, f.breakage_cny,
            f.deferred_opening_cny, f.deferred_cny, f.seats_entitled, f.seats_used,
            coalesce(l.lines, ''), coalesce(p.pools, '')
        )) as fingerprint
    from figures as f
    left join line_texts as l using (customer_key)
    left join pool_texts as p using (customer_key)
)

select * from statement_drafts
