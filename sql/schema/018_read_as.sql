-- An inbox file's content is recognised by its sha256 *and how it is read* (`read_as`):
-- `orders` (a CSV of inbox/orders), `usage` (JSON Lines) or `usage_gzip` (gzip-compressed JSON
-- Lines, a name ending .gz), as tasks/inbox_files.py `read_as` decides it from the listing.
-- By the digest alone, plain lines turned away as a broken `.jsonl.gz` and renamed `.jsonl`,
-- a gzip read as text and renamed `.jsonl.gz`, or a usage file byte for byte an ingested
-- orders file were skipped, none of their lines billed (§3 "Files": a corrected file is
-- ingested as new, nothing dropped silently). sha256 keeps its meaning (the bytes' digest).
-- Existing rows get theirs from their kind and path, as the listing gave them. Re-runnable.

alter table ingested_files add column if not exists read_as varchar;
update ingested_files
set read_as = case
    when kind = 'orders' then 'orders'
    when path like '%.gz' then 'usage_gzip'
    else 'usage'
end
where read_as is null;

-- a file never read is keyed by its reason and path (a ':' no digest holds): read as nothing
alter table rejected_files add column if not exists read_as varchar;
update rejected_files
set read_as = case
    when source_file like '%.csv' then 'orders'
    when source_file like '%.gz' then 'usage_gzip'
    else 'usage'
end
where read_as is null and sha256 not like '%:%';

alter table inbox_seen add column if not exists read_as varchar;
update inbox_seen
set read_as = case
    when path like '%.csv' then 'orders'
    when path like '%.gz' then 'usage_gzip'
    else 'usage'
end
where read_as is null;

-- ingested_files.sha256 was unique: the same bytes read two ways are two files now, unique
-- by (sha256, read_as). DuckDB cannot drop a constraint, so the table is copied (all its
-- columns, whatever later files add) and its keys put back: the same result however often run.
create or replace table ingested_files_read_as as select * from ingested_files order by file_id;
drop table ingested_files;
alter table ingested_files_read_as rename to ingested_files;
alter table ingested_files add primary key (file_id);
alter table ingested_files add unique (sha256, read_as);

comment on column rejected_files.read_as is 'How the file was read when turned away: orders, usage (JSON Lines) or usage_gzip; null for a file never read. The same bytes read another way (renamed) are read as new';
