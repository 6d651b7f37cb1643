-- A statement line's quantity is the sum of a month's quantities: 1,001 events of 999,999,999
-- (each below §3's 10^9) passed decimal(18, 6) and stopped every run. decimal(38, 6), as
-- usage_days. The month files written before hold decimal(18, 6): statement_lines' files are
-- read by name (tasks/keyed_files.py), so DuckDB unifies the two widths. Re-runnable.
alter table statement_lines alter quantity type decimal(38, 6);

comment on column statement_lines.quantity is 'Sum of their quantities (the function''s unit)';
