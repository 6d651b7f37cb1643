-- The working state of adbill. Keys are integers on the large tables (events, ledger);
-- analysts read the text ids through the views in 002_views.sql.

create table if not exists runs (
    run_id varchar primary key,
    started_at timestamptz,
    finished_at timestamptz,
    status varchar,              -- running, succeeded, failed
    through date,
    rebill_from date,
    trigger varchar,             -- cli, scheduled, deployment, demo
    days_billed integer,
    first_day date,
    last_day date,
    error varchar
);

create table if not exists ingested_files (
    file_id integer primary key,
    path varchar,
    kind varchar,                -- orders, usage
    sha256 varchar unique,
    bytes bigint,
    mtime_ns bigint,
    lines bigint,
    accepted bigint,
    rejected bigint,
    duplicates bigint,
    earliest_day date,           -- the earliest billing day its accepted rows touch
    lines_done bigint,           -- lines committed so far (a killed run resumes after them)
    complete boolean,
    ingested_at timestamptz,
    run_id varchar
);

create table if not exists customers (
    customer_key integer primary key,
    customer_id varchar unique,
    shard_hash ubigint           -- md5 of customer_id: shard = shard_hash % shards
);

create table if not exists orders (
    order_key integer,
    order_id varchar,
    customer_id varchar,
    customer_key integer,
    product varchar,
    source varchar,              -- subscription, package
    term_months integer,
    amount_cny decimal(18, 2),
    purchased_at timestamptz,
    purchase_day date,
    file_id integer,
    line_no bigint,
    ingested_at timestamptz
);

create table if not exists rejected_orders (
    source_file varchar,
    line_no bigint,
    raw varchar,
    reason varchar,
    ingested_at timestamptz,
    run_id varchar
);

create table if not exists events (
    event_key bigint,
    event_id varchar,
    customer_key integer,
    account_id varchar,
    function varchar,
    quantity decimal(18, 6),
    status varchar,
    occurred_at timestamptz,
    day date,
    credits bigint,
    file_id integer,
    line_no bigint,
    id_hash ubigint              -- hash(event_id): narrows the duplicate check (see tasks/db.py)
);

create table if not exists rejected_events (
    source_file varchar,
    line_no bigint,
    raw varchar,
    reason varchar,
    ingested_at timestamptz,
    run_id varchar
);

create table if not exists pools (
    pool_key bigint primary key,
    pool_id varchar,
    customer_key integer,
    customer_id varchar,
    order_id varchar,
    source varchar,
    product varchar,
    period_index integer,
    credits bigint,
    amount_cny decimal(18, 2),
    available_from timestamptz,
    expires_at timestamptz,
    grant_day date,              -- billing day of available_from
    expiry_day date,             -- billing day whose cutoff is expires_at
    priority integer,            -- deduction order within the customer (§5)
    seats integer,
    remaining bigint             -- as of the last billed day's cutoff
);

create table if not exists ledger_entries (
    entry_id bigint,
    day date,
    customer_key integer,
    pool_key bigint,
    event_key bigint,
    posted_at timestamptz,
    kind varchar,                -- grant, use, settle, expire, arrears
    credits bigint
);

create table if not exists pool_days (
    day date,
    pool_key bigint,
    customer_key integer,
    opening bigint,              -- remaining at the day's start (credits if granted that day)
    granted bigint,
    used bigint,
    settled bigint,
    expired bigint,
    remaining bigint,            -- at the day's cutoff
    drawn_cum bigint,            -- used + settled since the grant, through the day
    revenue_cum decimal(18, 2),  -- §7 recognised through the day
    revenue_cny decimal(18, 2),
    breakage_cny decimal(18, 2)
);

create table if not exists customer_days (
    customer_id varchar,
    customer_key integer,
    day date,
    granted bigint,
    used bigint,
    settled bigint,
    expired bigint,
    arrears_opened bigint,
    arrears_outstanding bigint,
    balance bigint,
    rated bigint,                -- credits of the day's charged events (used + arrears_opened)
    events bigint,
    payments_cny decimal(18, 2),
    revenue_cny decimal(18, 2),
    breakage_cny decimal(18, 2),
    deferred_cny decimal(18, 2)
);

create table if not exists billed_days (
    day date primary key,
    run_id varchar,
    billed_at timestamptz,
    files_seen integer          -- the last ingested file the day was billed with
);

create table if not exists billing_runs (
    run_id varchar,
    day date,
    reason varchar,              -- new, late_data, rebill
    started_at timestamptz,
    finished_at timestamptz,
    status varchar,
    events_accepted bigint,
    events_rejected bigint,
    credits_used bigint,
    seconds double
);

-- columns added after the first working databases were made (kept so they upgrade in place)
alter table ingested_files add column if not exists mtime_ns bigint;
alter table ingested_files add column if not exists lines_done bigint;
alter table ingested_files add column if not exists complete boolean;
alter table billed_days add column if not exists files_seen integer;
alter table customers add column if not exists shard_hash ubigint;
alter table events add column if not exists id_hash ubigint;
create table if not exists adbill_meta (key varchar primary key, value varchar);
update customers set shard_hash = md5_number_lower(customer_id) where shard_hash is null;
update ingested_files set complete = true, lines_done = lines where complete is null;

-- inbox files turned away whole (§3 "Files"): a link or special file, never opened, or a
-- file that cannot be read to its end; sha256 is the content's digest (or, for a file
-- never read, the reason and path), so each is listed once
create table if not exists rejected_files (
    source_file varchar,
    reason varchar,              -- not_a_regular_file, unreadable_file
    detail varchar,
    ingested_at timestamptz,
    run_id varchar,
    sha256 varchar
);
