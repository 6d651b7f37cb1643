-- Where each run publishes its warehouse (`--db` / ADBILL_DB, else <data-dir>/warehouse.duckdb),
-- recorded as it starts: `adbill status` warns that a run was stopped while it published only
-- when the warehouse it reads is the one that run was publishing to. Idempotent.

alter table runs add column if not exists published_to varchar;
