-- Statements (billing-rules §8) and the suspension list (§9): what customers and operations
-- receive. Written by tasks/statements.py and tasks/suspensions.py, one billing day at a time.

create table if not exists statements (
    customer_id varchar,
    customer_key integer,
    month date,                      -- the month's first day (billing zone)
    revision integer,                -- 1, 2, ... a changed final statement gets a new one
    status varchar,                  -- month_to_date, final
    through_day date,                -- the last billing day the figures include
    opening_balance bigint,          -- balance at the previous month's close
    granted bigint,
    used bigint,                     -- drawn from pools by the month's events
    expired bigint,
    arrears_opening bigint,          -- outstanding at the previous month's close
    arrears_opened bigint,
    arrears_settled bigint,          -- drawn from pools to pay arrears
    arrears_outstanding bigint,      -- at the close of through_day
    closing_balance bigint,          -- opening + granted - used - arrears_settled - expired
    rated bigint,                    -- credits of the month's charged events (used + opened)
    events bigint,                   -- accepted events of the month (succeeded and failed)
    payments_cny decimal(18, 2),     -- orders purchased in the month
    revenue_cny decimal(18, 2),      -- recognised in the month (§7)
    breakage_cny decimal(18, 2),
    deferred_opening_cny decimal(18, 2),
    deferred_cny decimal(18, 2),     -- at close: paid, not yet recognised nor broken
    seats_entitled integer,          -- at the cutoff after through_day
    seats_used integer,              -- distinct account_ids with events in the month
    fingerprint varchar,             -- md5 of the figures, lines and pools: "did it change?"
    created_at timestamptz,          -- when this revision was first written
    updated_at timestamptz           -- last refresh (month-to-date revisions are refreshed)
);

create table if not exists statement_lines (
    customer_id varchar,
    customer_key integer,
    month date,
    revision integer,
    function varchar,
    events bigint,                   -- succeeded (charged) events
    failed_events bigint,            -- failed events: recorded, 0 credits
    quantity decimal(18, 6),         -- of the succeeded events, in the function's unit
    credits bigint
);

create table if not exists statement_pools (
    customer_id varchar,
    customer_key integer,
    month date,
    revision integer,
    pool_id varchar,
    order_id varchar,
    purchased_at timestamptz,        -- when its order was paid
    source varchar,
    product varchar,
    period_index integer,
    credits bigint,
    amount_cny decimal(18, 2),
    available_from timestamptz,
    expires_at timestamptz,
    state varchar,                   -- queued, active, expired: at the cutoff after through_day
    granted bigint,                  -- credits if granted in the month (through_day), else 0
    opening bigint,                  -- remaining at the month's start (or at grant)
    used bigint,
    settled bigint,
    expired bigint,
    remaining bigint,                -- at the close of through_day (0 while queued)
    revenue_cny decimal(18, 2),      -- recognised in the month
    revenue_to_date_cny decimal(18, 2),
    breakage_cny decimal(18, 2),
    deferred_cny decimal(18, 2)      -- amount - revenue_to_date - breakage
);

create table if not exists suspensions (
    day date,
    customer_id varchar,
    customer_key integer,
    reason varchar,                  -- arrears, no_credits
    net_balance bigint,
    arrears_outstanding bigint,
    suspended_since date,            -- first day of the current unbroken run of suspended days
    valid_credits bigint             -- credits of the pools valid at the cutoff
);

create table if not exists suspension_changes (
    day date,
    customer_id varchar,
    customer_key integer,
    change varchar,                  -- suspended, reinstated
    net_balance bigint,
    arrears_outstanding bigint,
    suspended_since date             -- reinstated: the first day of the run that ended
);

create table if not exists at_risk (
    day date,
    customer_id varchar,
    customer_key integer,
    net_balance bigint,
    avg_daily_used decimal(18, 2),   -- total_rated_7d / 7, rounded half up to 2 places
    projected_exhaustion_date date,  -- day + floor(7 × net / total_rated_7d)
    total_rated_7d bigint,           -- credits rated over day-6 .. day
    arrears_outstanding bigint
);

-- The latest revision of every statement: what the documents show.
create or replace view latest_statements as
select s.*
from statements as s
qualify s.revision = max(s.revision) over (partition by s.customer_key, s.month);

-- One billing day's list for operations: suspended, reinstated and at-risk customers.
create or replace view suspension_list as
with suspended as (
    select
        s.day, s.customer_id, 'suspended' as status, s.reason, s.net_balance,
        s.arrears_outstanding, s.suspended_since, c.change,
        null::date as projected_exhaustion_date
    from suspensions as s
    left join suspension_changes as c using (day, customer_key)
),

warned as (
    select
        r.day, r.customer_id, 'at_risk' as status, null as reason, r.net_balance,
        r.arrears_outstanding, null::date as suspended_since, c.change,
        r.projected_exhaustion_date
    from at_risk as r
    left join suspension_changes as c using (day, customer_key)
),

reinstated as (
    select
        c.day, c.customer_id, 'active' as status, null as reason, c.net_balance,
        c.arrears_outstanding, null::date as suspended_since, c.change,
        null::date as projected_exhaustion_date
    from suspension_changes as c
    anti join at_risk as r using (day, customer_key)
    where c.change = 'reinstated'
)

select * from suspended
union all
select * from warned
union all
select * from reinstated;

-- Per billed day, what a month's statement sums (§8), so that refreshing the month to date
-- reads a few rows per customer and day, not every event of the month. Written with the
-- day's other figures (tasks/daily.py); a day billed again is written again.
create table if not exists usage_days (
    day date,
    customer_key integer,
    function varchar,
    events bigint,                   -- succeeded (charged) events
    failed_events bigint,            -- failed events: recorded, 0 credits
    quantity decimal(38, 6),         -- of the succeeded events, in the function's unit
    credits bigint
);

create table if not exists account_days (   -- the accounts with events on the day (seats, §8)
    day date,
    customer_key integer,
    account_id varchar
);
