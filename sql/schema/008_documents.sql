-- Statement documents written under <data-dir>/out/statements (interfaces.md, Data dir): what
-- each customer's documents of a month show, so that a run writes only final statements that
-- are new or revised since (tasks/documents.py). One row per customer × month: the last
-- documents written by a run. Re-runnable.

create table if not exists written_documents (
    customer_key integer,
    customer_id varchar,
    month date,                      -- the month's first day (billing zone)
    revision integer,                -- the statement revision the documents show
    status varchar,                  -- month_to_date, final
    fingerprint varchar,             -- statements.fingerprint of that revision
    path varchar,                    -- the page under <data-dir>/out (statements/YYYY-MM/x.html);
                                     -- the CSV beside it (.csv)
    written_at timestamptz
);

comment on table written_documents is 'One row per customer × month: the statement documents a run last wrote (revision, status, fingerprint, file); internal';
