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
