-- The catalog's [settings] a data dir bills with (tasks/rate.py, check_catalog). Its pools
-- and ledger follow them (a period's length, a package's validity), and a customer's pools
-- are rebuilt only when new orders come: a catalog whose settings differ from these is
-- refused once the data dir has accepted an order or billed a day. Re-runnable.
create table if not exists catalog_settings (
    name varchar primary key,    -- period_days, package_validity_months
    value varchar,               -- as the catalog gave it
    recorded_at timestamptz,
    recorded_run varchar
);
