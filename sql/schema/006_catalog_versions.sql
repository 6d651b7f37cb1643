-- Catalog versions (issue 14). Idempotent: it runs on every connection.

-- every version of the catalog a run applied: its entry, instants and fingerprint; a version
-- edited or taken out of the file is retired (kept for the audit of the events it priced)
create table if not exists catalog_versions (
    version_id bigint,           -- stable: from the fingerprint (tasks/catalog.py)
    kind varchar,                -- edition, package, function
    code varchar,
    effective_from timestamptz,  -- null: from the beginning
    effective_until timestamptz, -- null: until further notice (as of the last run)
    fingerprint varchar,         -- SHA-256 of the version's entry, instant and fields
    content varchar,             -- its fields as JSON
    applied_at timestamptz,
    applied_run varchar,
    retired_at timestamptz,
    retired_run varchar
);

-- the price and credits an order was accepted at (§3: the version in force at purchased_at);
-- an accepted order keeps them whatever the catalog says later (a payment is a fact)
create table if not exists order_prices (
    order_key integer primary key,
    version_id bigint,
    unit_price_cny decimal(18, 2),
    credits bigint,
    seats integer
);

-- the version that priced each rated event and each pool (audit)
alter table events add column if not exists catalog_version bigint;
alter table pools add column if not exists catalog_version bigint;
