-- What operators look at: which Prefect flow run made each adbill run, and the billing
-- status as each run left it (the facts of `adbill status`, docs/operating.md).
-- Idempotent: every statement may run again on every connect.

alter table runs add column if not exists flow_run_id varchar;    -- Prefect's flow-run id
alter table runs add column if not exists flow_run_name varchar;  -- as the UI shows it

create table if not exists billing_status (
    run_id varchar,                  -- the run that wrote it, just before publishing
    flow_run_id varchar,
    as_of timestamptz,
    today date,                      -- "today" in the billing zone (or ADBILL_TODAY)
    billed_through date,             -- the last billed day
    days_waiting integer,            -- days a run would bill now (not billed yet, or stale)
    first_day_waiting date,
    stale_days integer,              -- billed days that files ingested since then touch
    last_scheduled_run_id varchar,
    last_scheduled_status varchar,   -- succeeded, failed, running; null: none yet
    last_scheduled_error varchar,
    since timestamptz,               -- rejects counted from here on
    lines_rejected bigint,
    orders_rejected bigint,
    files_rejected bigint,
    warnings varchar[]
);
