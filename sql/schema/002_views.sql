-- What analysts query: the tables of interfaces.md, with text ids.

-- the catalog version that rated each event (tables of 006_catalog_versions.sql)
alter table events add column if not exists catalog_version bigint;

create or replace view rated_events as
select
    e.event_id,
    c.customer_id,
    e.account_id,
    e.function,
    e.quantity,
    e.status,
    e.occurred_at,
    e.day,
    e.credits,
    e.catalog_version            -- catalog_versions.version_id of the price that rated it
from events as e
join customers as c using (customer_key);

create or replace view ledger as
select
    l.entry_id,
    c.customer_id,
    p.pool_id,
    e.event_id,
    l.posted_at,
    l.kind,
    l.credits,
    l.day
from ledger_entries as l
join customers as c using (customer_key)
left join pools as p using (pool_key)
left join events as e using (event_key);

-- what analysts read in duckdb_views() / duckdb_columns() (here, so that re-creating the
-- views keeps them)
comment on view rated_events is 'One row per accepted usage event with its credits (§2, §3)';
comment on column rated_events.quantity is 'Exact quantity in the function''s unit (6 decimals)';
comment on column rated_events.day is 'Billing day of occurred_at (local date)';
comment on column rated_events.credits is 'ceil(quantity / unit_size) x credits_per_unit; 0 for failed events';
comment on view ledger is 'One row per credit movement: grant, use, settle, expire, arrears (§5, §6)';
comment on column ledger.kind is 'grant, use, settle, expire or arrears';
comment on column ledger.credits is 'Credits moved';
comment on column ledger.posted_at is 'Instant of the movement';
comment on column rated_events.event_id is 'The event''s id as delivered';
comment on column rated_events.customer_id is 'The customer';
comment on column rated_events.account_id is 'The account (seat) that used the service';
comment on column rated_events.function is 'Function code (data/catalog.toml)';
comment on column rated_events.status is 'succeeded or failed (failed events cost 0 credits)';
comment on column rated_events.occurred_at is 'Instant of the event';
comment on column ledger.entry_id is 'Id of the movement';
comment on column ledger.customer_id is 'The customer';
comment on column ledger.pool_id is 'The pool drawn or granted (null for arrears)';
comment on column ledger.event_id is 'The event that drew the credits (use, arrears)';
