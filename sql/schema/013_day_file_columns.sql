-- The columns each day file holds (as written: quoted, comma-separated), so that the
-- warehouse reads a table's files without comparing their schemas one by one when they all
-- hold the table's columns of today (tasks/day_files.py `uniform`); null for the files
-- written before, read by name as before. Re-runnable.
alter table day_files add column if not exists columns varchar;
