-- Usage files complete once their decisions are in (sql/dedupe_events.sql): their lines,
-- accepted less the lines the decisions took out, rejected and duplicates added, and the
-- earliest billing day their accepted events touch (which billed days are stale).
update ingested_files as f
set
    lines = n.lines,
    lines_done = n.lines,
    accepted = f.accepted - n.duplicates - n.rejected,
    rejected = f.rejected + n.rejected,
    duplicates = f.duplicates + n.duplicates,
    earliest_day = n.earliest_day,
    complete = true
from (
    select
        d.file_id,
        d.lines,
        coalesce(x.duplicates, 0) as duplicates,
        coalesce(x.rejected, 0) as rejected,
        e.earliest_day
    from decide_files as d
    left join (
        select
            file_id,
            count(*) filter (where reason = 'duplicate') as duplicates,
            count(*) filter (where reason <> 'duplicate') as rejected
        from file_decisions
        group by file_id
    ) as x using (file_id)
    left join (
        select file_id, min(day) as earliest_day
        from events
        where event_key >= $first_key and file_id in (select file_id from decide_files)
        group by file_id
    ) as e using (file_id)
) as n
where f.file_id = n.file_id;

drop table file_decisions
