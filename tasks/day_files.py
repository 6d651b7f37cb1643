"""The per-day tables laid out by day: Parquet files per table × day beside the working database.

Each billed day's rows of the large per-day tables (PARTITIONED) are written once, at the end
of the run that changed them, as zstd Parquet under `<state>/days/<table>/<run_id>/day=D/`,
and recorded in `day_files` (sql/schema/009_day_files.sql). A day written again (late data, a
rebill, a price change) gets a new file; the old one is marked superseded and kept for the
readers of an older warehouse, then collected (`collect`). The published warehouse reads
these files (tasks/publish.py), so publishing costs the changed days, and no day is stored
twice.

The working database keeps only the days a run can still change without being asked to
(`hot_from`: the late window and the month before it); older days are dropped from it once
written (`freeze`) and read back when a rebill or a price change reaches them (`thaw`). So
its size and every per-day query's cost stay those of the recent days, year after year.
Once a month is older than that window its day files are merged into one file per table
(`compact`), so that what names the files (the warehouse's views) stays small too.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import duckdb

from tasks.db import scalar, transaction

# the per-day tables stored by day (each has a `day` column); the small ones stay in DuckDB
PARTITIONED = (
    "events",
    "ledger_entries",
    "pool_days",
    "customer_days",
    "usage_days",
    "account_days",
    "suspensions",
    "suspension_changes",
    "at_risk",
)
# the per-month tables (a statement of a month, its lines and pools): written by month as a
# base and the statements changed since (tasks/keyed_files.py); the working database keeps
# them whole
MONTHLY = ("statement_rows", "statement_lines", "statement_pool_rows")
# columns not written (recomputed when read: the event id hash depends on the DuckDB reading)
NOT_WRITTEN = {"events": ("id_hash",)}
DAYS_DIR = "days"  # under the state dir
# up to this many days a table's changed days are written one plain COPY each; more (a
# catch-up, a rebill) in one COPY partitioned by day, which costs less per day
FEW_DAYS = 3
# a closed month's file of a per-day table (`compact`): <run_id>-month-<token>/month=YYYY-MM/
MONTH_PREFIX = "month="
MONTH_FOLDER = "-month-"
NOTHING_FROZEN = date(1, 1, 1)
# how the state's Parquet files are written: zstd, Parquet's version 2 encodings (delta and
# byte-stream-split: a 1M-event day's events file 10 MB and 0.41-0.42 s to write, against
# 13 MB and 0.45-0.47 s; the ledger's 0.13-0.14 s against 0.18-0.20 s; read as fast or
# faster by DuckDB, pyarrow and Polars)
PARQUET = "format parquet, compression zstd, parquet_version v2"
# a changed day's files (rewritten whenever late data reaches the day; merged into a month's
# file, at PARQUET's level, once the month is closed) at zstd's fastest level: a 1M-event
# day's events file 0.50-0.51 CPU-s against 0.60-0.66, 18 MB against 17 MB, read as fast
DAY_PARQUET = f"{PARQUET}, compression_level 1"
# A day's file is written without keeping the table's row order (`preserve_insertion_order`
# off for its COPY): no reader depends on the order of a day file's rows (views, a day
# read back, a month's merge), and DuckDB's writer then needs no ordering of its row
# groups: the events file of a 10M-event day in 4.3-4.9 s (8.2-9.3 CPU-s) against 6.0-6.5 s
# (11.0-11.5 CPU-s), its ledger 1.27-1.35 s against 1.65-1.79 s; of a 1M-event day 0.46-
# 0.51 s against 0.52-0.66 s (the ledger the same); the files about the same size. A
# closed month's merge likewise (1M events read from day files and written as one: 0.43-
# 0.47 s against 0.56-0.67 s)
QUOTED_NAME = re.compile(r'"((?:[^"]|"")*)"')  # a name as `quoted` writes it


def writer_run(relative: str) -> str | None:
    """The id of the run that wrote a file under `<state>/days/`, from its path there
    (`<table>/<run_id>/...`, a merged month's `<table>/<run_id>-month-<token>/...`)."""
    parts = Path(relative).parts
    return parts[1].split(MONTH_FOLDER)[0] if len(parts) > 2 else None


def frozen_before(con) -> date:
    """The first day the working database still holds (every earlier day is in Parquet only)."""
    kept = scalar(con, "select value from adbill_meta where key = 'frozen_before'")
    return date.fromisoformat(kept) if kept else NOTHING_FROZEN


def context_from(day: date) -> date:
    """The first day a billing of `day` reads: the first of the month before (a month's
    statement reads its month and the close of the one before; a day reads the day before)."""
    first = day.replace(day=1)
    return (first - timedelta(days=1)).replace(day=1) if first > date.min else date.min


def hot_from(last_billed: date, max_late_days: int, hot_days: int = 0) -> date:
    """The first day kept in the working database after a run: the context of the earliest
    day late data can still reach (`hot_days` > 0: exactly that many days, for tests)."""
    if hot_days:
        return last_billed - timedelta(days=hot_days)
    return context_from(last_billed - timedelta(days=max_late_days + 2))


def last_event_key(con) -> int:
    """The highest event key ever given (a day dropped from the working database takes its
    events away, not its keys: the written-out watermark keeps them)."""
    written = scalar(con, "select coalesce(max(event_key), 0) from day_exports")
    # (a constant bound: the scan skips, by its row groups' key ranges, every event written
    # out already, instead of reading the keys of the months the working database holds)
    newer = scalar(con, "select max(event_key) from events where event_key > $w", {"w": written})
    return max(written, newer or 0)


def current_files(
    con,
    table: str,
    first: date | None = None,
    before: date | None = None,
    database: str | None = None,
    part: str | None = None,
) -> list[tuple[date, str]]:
    """(day, absolute path) of a table's current files, in day order, optionally in a range;
    of the connection's working database or an attached one (`database`); of the per-day
    tables, or the `part` ('base', 'delta') of a keyed one (tasks/keyed_files.py). A file
    holding several days (a closed month's, `compact`) comes once, with its first day in the
    range: read it with `days=` (read_sql) when the range may cut through its month."""
    rows = con.execute(
        f"select day, path from {table_in('day_files', database)} where table_name = $t "
        "and superseded_at is null and path is not null "
        "and part is not distinct from $part "
        "and day >= coalesce($first, date '0001-01-01') "
        "and day < coalesce($before, date '9999-12-31') order by day, path",
        {"t": table, "first": first, "before": before, "part": part},
    ).fetchall()
    root = state_dir(con, database)
    seen: set[str] = set()
    found = []
    for d, p in rows:
        if p not in seen:
            seen.add(p)
            found.append((d, str(root / p)))
    return found


def state_dir(con, database: str | None = None) -> Path:
    """The directory of the working database's file (the state dir)."""
    [(path,)] = con.execute(
        "select path from duckdb_databases() "
        "where database_name = coalesce($db, current_database())",
        {"db": database},
    ).fetchall()
    return Path(path).parent


def columns(con, table: str, database: str | None = None) -> list[str]:
    """A table's columns in order (the files are read back by these names), in the
    connection's database or an attached one."""
    return [name for name, _ in column_types(con, table, database)]


def column_types(con, table: str, database: str | None = None) -> list[tuple[str, str]]:
    """A table's (column, SQL type) in order, in the connection's database or an attached one."""
    return con.execute(
        "select column_name, data_type from duckdb_columns() "
        "where database_name = coalesce($db, current_database()) "
        "and schema_name = 'main' and table_name = $t order by column_index",
        {"db": database, "t": table},
    ).fetchall()


def written_columns(con, table: str, database: str | None = None) -> str:
    """The columns a table's day files hold, quoted, in order (NOT_WRITTEN left out)."""
    skip = NOT_WRITTEN.get(table, ())
    return ", ".join(quoted(c) for c in columns(con, table, database) if c not in skip)


def uniform(con, table: str, database: str | None = None) -> bool:
    """Whether every current day file of a table holds the table's written columns of today
    (then its files are read without comparing their schemas: DuckDB reads each file's footer
    to match columns by name, which grows with the days)."""
    return bool(
        scalar(
            con,
            "select coalesce(bool_and(columns is not distinct from $c), true) "
            f"from {table_in('day_files', database)} "
            "where table_name = $t and superseded_at is null and path is not null "
            "and part is null",
            {"t": table, "c": written_columns(con, table, database)},
        )
    )


def read_sql(
    con,
    table: str,
    files: list[str],
    *,
    rehash: bool = False,
    database: str | None = None,
    by_name: bool = True,
    days: tuple[date, date] | None = None,
) -> str:
    """A SELECT of `files` as rows of `table` (with `by_name`, a column added since a file
    was written reads as null; without it every file must hold the written columns): its
    written columns, or with `rehash` all of them, the event id hash computed by this DuckDB
    (tasks/db.py); with `days` (first, before) only the rows of those days (a month's file
    holds days on either side of a range's ends)."""
    skip = () if rehash else NOT_WRITTEN.get(table, ())
    held = _held_columns(con, files, database) if by_name else None
    picked = []
    for c, sql_type in column_types(con, table, database):
        if c in skip:
            continue
        if rehash and c == "id_hash":
            picked.append("hash(event_id) as id_hash")
        elif held is not None and c not in held:  # added after every one of these was written
            picked.append(f"cast(null as {sql_type}) as {quoted(c)}")
        else:
            picked.append(quoted(c))
    cols = ", ".join(picked)
    listed = ", ".join(literal(f) for f in files)
    union = ", union_by_name = true" if by_name else ""
    where = ""
    if days is not None:
        first, before = days
        where = f" where day >= date '{first.isoformat()}' and day < date '{before.isoformat()}'"
    return f"select {cols} from read_parquet([{listed}]{union}){where}"


def _held_columns(con, files: list[str], database: str | None) -> set[str] | None:
    """The columns the files hold by their records in `day_files` (None: a file recorded
    without them, or not recorded: then every column is taken as held)."""
    root = state_dir(con, database)
    try:
        paths = [str(Path(f).relative_to(root)) for f in files]
    except ValueError:
        return None
    rows = con.execute(
        f"select path, any_value(columns) from {table_in('day_files', database)} "
        "where list_contains($p, path) group by path",
        {"p": paths},
    ).fetchall()
    if len(rows) < len(set(paths)) or any(c is None for _, c in rows):
        return None
    held: set[str] = set()
    for _, cols in rows:  # as written_columns wrote them: each quoted (a name may hold ", ")
        held.update(n.replace('""', '"') for n in QUOTED_NAME.findall(cols))
    return held


def copy_to_parquet(con, select: str, path: Path) -> int:
    """A SELECT's rows written as one zstd Parquet file at `path`; the rows written (none:
    no file left)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    [(rows,)] = con.execute(f"copy ({select}) to {literal(str(path))} ({PARQUET})").fetchall()
    if not rows:
        path.unlink(missing_ok=True)
    return rows


def table_in(table: str, database: str | None = None) -> str:
    """A table of the connection's database, or of an attached one, as SQL names it."""
    return f"{quoted(database)}.main.{quoted(table)}" if database else quoted(table)


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# ---------------------------------------------------------------------------------------------
# Writing changed days out (every successful run, before it publishes)


@dataclass
class Exported:
    """What a run wrote out: the days, files and rows, the days dropped from the working
    database, and the old files deleted."""

    days: int = 0
    files: int = 0
    rows: int = 0
    frozen: int = 0  # days dropped from the working database
    months: int = 0  # closed months' files merged (table × month)
    collected: int = 0  # old files deleted


def changed_days(con) -> list[date]:
    """The days whose rows differ from their current files: billed by a run not written out
    yet, holding events newer than the last written, or billed but never written (a data dir
    from before this layout), or written but no longer billed (unbilled by a failed run)."""
    rows = con.execute(
        """
        select day from billing_runs
        where run_id not in (select run_id from day_exports)
        union
        select day from events where event_key > $kept
        union
        select day from day_changes
        union
        select day from billed_days
        where day not in (
            select day from day_files
            where superseded_at is null and table_name = 'customer_days'
        )
        union
        select day from day_files
        where superseded_at is null and path is not null and part is null
            and table_name not in (select unnest($unbilled_too))
            and day >= $hot and day not in (select day from billed_days)
        """,
        # (events of a day not billed are written all the same; a month's file is by month;
        # `kept`: a constant, so the scan skips the events written out by their key ranges)
        {
            "hot": frozen_before(con),
            "unbilled_too": ["events", *MONTHLY],
            "kept": scalar(con, "select coalesce(max(event_key), -1) from day_exports"),
        },
    ).fetchall()
    return sorted(r[0] for r in rows if r[0] is not None)


def _months_of(con, days: list[date]) -> list[date]:
    """Every day held by a closed month's file (`compact`) that holds one of `days`: a day of
    it written again takes the whole month back to a file per day, so that no file holds a
    day another file holds (the month is merged again once it is frozen)."""
    if not days:
        return []
    rows = con.execute(  # (every day of the calendar months any table's merged file holds)
        "select distinct day from day_files where superseded_at is null and part is null "
        "and date_trunc('month', day) in (select date_trunc('month', day) from day_files "
        "where superseded_at is null and part is null and list_contains($days, day) "
        "and path like $months)",
        {"days": days, "months": f"%/{MONTH_PREFIX}%"},
    ).fetchall()
    return [r[0] for r in rows]


def _never_written(con, table: str) -> list[date]:
    """Billed days with no file of this table (none: a table laid out by day since a data
    dir's earlier days were billed; their rows are still in the working database, never
    dropped from it before they are written)."""
    rows = con.execute(
        "select day from billed_days where day not in (select day from day_files "
        "where table_name = $t and superseded_at is null and part is null)",
        {"t": table},
    ).fetchall()
    return [r[0] for r in rows]


def mark_changed(con, first: date) -> None:
    """Days from `first` on whose events were changed in place (re-rated): written out at the
    end of the run whether it bills them again or not."""
    con.execute("insert into day_changes select distinct day from events where day >= ?", [first])


def export_days(con, run_id: str) -> Exported:
    """Write the changed days of every per-day table as Parquet and record them as current
    (the files they replace marked superseded), in one transaction after the files are on
    disk; a run killed in between leaves files no record names, collected later."""
    done = Exported()
    days = changed_days(con)
    days = sorted(set(days) | set(_months_of(con, days)))
    if days and days[0] < frozen_before(con):
        # a day the working database no longer holds whole (an event accepted late into it
        # and not billed again): read it back first, so that its file is written whole
        thaw(con, days[0])
    root = state_dir(con)
    written: list[tuple[str, date, str | None, int]] = []
    for table in PARTITIONED:
        todo = sorted(set(days) | set(_never_written(con, table)))
        written += _write_table(con, root, table, run_id, todo)
    cols = {t: written_columns(con, t) for t in PARTITIONED}
    with transaction(con):
        if written:
            con.execute("create or replace temp table replaced (table_name varchar, day date)")
            con.executemany("insert into temp.replaced values (?, ?)", [w[:2] for w in written])
            con.execute(
                "update day_files set superseded_at = now() where superseded_at is null "
                "and part is null "
                "and (table_name, day) in (select (table_name, day) from temp.replaced)"
            )
            con.executemany(
                "insert into day_files by name select $1 as table_name, $2 as day, $3 as path, "
                "$4 as rows, $5 as run_id, now() as written_at, $6 as columns",
                [(t, d, p, n, run_id, cols[t]) for t, d, p, n in written],
            )
        con.execute("delete from day_changes")
        # every event key given so far is written out (never less than before: a day frozen
        # takes its events away, not its keys)
        top = last_event_key(con)
        con.execute(
            "insert into day_exports select run_id, now(), $top from ("
            "select distinct run_id from billing_runs union select $run) "
            "where run_id not in (select run_id from day_exports)",
            {"run": run_id, "top": top},
        )
        con.execute(  # (a run exporting again)
            "update day_exports set event_key = $top where run_id = $run",
            {"run": run_id, "top": top},
        )
    done.days, done.rows = len(days), sum(w[3] for w in written)
    done.files = sum(1 for w in written if w[2] is not None)
    return done


def _write_table(
    con, root: Path, table: str, run_id: str, days: list[date]
) -> list[tuple[str, date, str | None, int]]:
    """One table's rows of the given days, one zstd Parquet file per day: (table, day, path
    relative to the state dir, rows) of each; a day without rows is recorded without a file
    (its older file is replaced all the same)."""
    if not days:
        return []
    key = "day"
    listed = ", ".join(f"date '{d.isoformat()}'" for d in days)
    counts = dict(
        con.execute(
            f"select {key}, count(*) from {table} where {key} in ({listed}) group by {key}"
        ).fetchall()
    )
    out = root / DAYS_DIR / table / run_id
    shutil.rmtree(out, ignore_errors=True)  # a retry of the same run writes afresh
    cols = written_columns(con, table)
    found: list[tuple[str, date, str | None, int]] = []
    with _unordered(con):  # (its only statements are the table's COPYs)
        if len(counts) > FEW_DAYS:  # a catch-up: one partitioned write, a folder per day
            out.parent.mkdir(parents=True, exist_ok=True)
            con.execute(
                f"copy (select {cols} from {table} where {key} in ({listed})) to "
                f"{literal(str(out))} ({DAY_PARQUET}, partition_by ({key}), "
                "write_partition_columns true)"
            )
        for d in days:
            if not counts.get(d):
                found.append((table, d, None, 0))
                continue
            folder = out / f"{key}={d.isoformat()}"
            if len(counts) <= FEW_DAYS:  # a daily run: a plain write per day costs less
                folder.mkdir(parents=True, exist_ok=True)
                con.execute(
                    f"copy (select {cols} from {table} where {key} = date '{d.isoformat()}') "
                    f"to {literal(str(folder / 'data_0.parquet'))} ({DAY_PARQUET})"
                )
            parts = sorted(folder.glob("*.parquet"))  # a partitioned write: one per thread
            for i, part in enumerate(parts):
                found.append((table, d, str(part.relative_to(root)), counts[d] if i == 0 else 0))
    return found


# ---------------------------------------------------------------------------------------------
# The working database's window of days


def freeze(con, first_hot: date) -> int:
    """Drop from the working database the rows of days before `first_hot` (all written out
    already: call after export_days); the days dropped."""
    before = frozen_before(con)
    if first_hot <= before:
        return 0
    unwritten = changed_days(con)
    if any(before <= d < first_hot for d in unwritten):
        raise RuntimeError("freeze before export: days before the window are not written out")
    dropped = scalar(con, "select count(distinct day) from events where day < $d", {"d": first_hot})
    with transaction(con):
        for table in PARTITIONED:
            con.execute(f"delete from {table} where day < ?", [first_hot])
        _set_frozen_before(con, first_hot)
    return dropped


@contextlib.contextmanager
def _unordered(con):
    """DuckDB free to write rows in any order meanwhile (DAY_PARQUET's note); the
    connection's setting as it was afterwards, whatever happens."""
    was = scalar(con, "select current_setting('preserve_insertion_order')")
    restore = f"set preserve_insertion_order = {'true' if was else 'false'}"
    con.execute("set preserve_insertion_order = false")
    try:
        yield
    except BaseException:
        # (a connection whose statement failed may refuse this too: the failure is the news)
        with contextlib.suppress(duckdb.Error):
            con.execute(restore)
        raise
    con.execute(restore)


def thaw(con, first: date) -> int:
    """Read the days from `first` on back into the working database (a rebill or a price
    change reaches them); the days read back."""
    before = frozen_before(con)
    if first >= before:
        return 0
    with transaction(con):
        for table in PARTITIONED:
            files = [p for _, p in current_files(con, table, first, before)]
            if files:
                if table != "events":
                    # a day's rows of these come only from billing it: any the working
                    # database holds are a table laid out by day since these days were billed
                    # (kept until the window moves on), never read back twice. (Events
                    # accepted late into a frozen day are in the database and not in its
                    # file: kept.)
                    con.execute(
                        f"delete from {table} where day >= $f and day < $b",
                        {"f": first, "b": before},
                    )
                rows = read_sql(con, table, files, rehash=table == "events", days=(first, before))
                con.execute(f"insert into {table} {rows}")
        _set_frozen_before(con, first)
    return (before - first).days


def _set_frozen_before(con, day: date) -> None:
    con.execute("insert or replace into adbill_meta values ('frozen_before', ?)", [day.isoformat()])


def history_events(con, first: date, last: date) -> None:
    """temp.history_events: the events of days first..last wherever they are (the working
    database, and the written files of days it no longer holds), for the duplicate check."""
    before = frozen_before(con)
    upto = min(before, last + timedelta(days=1)) if last < date.max else before
    files = [p for _, p in current_files(con, "events", first, upto)]
    if first >= before or not files:
        con.execute("create or replace temp view history_events as select * from events")
        return
    cols = ", ".join(quoted(c) for c in columns(con, "events"))
    con.execute(
        f"create or replace temp view history_events as select {cols} from events "
        f"union all {read_sql(con, 'events', files, rehash=True, days=(first, upto))}"
    )


# ---------------------------------------------------------------------------------------------
# Closed months: one file per table × month


def compact(con, run_id: str) -> tuple[int, list[str]]:
    """Merge the day files of each month the working database no longer holds (closed, past
    the late window) into one file per table, recorded as each of its days' current file (the
    day files it replaces are superseded, kept for readers, then collected): the warehouse's
    views and the reads of old days name ~12 files a year per table instead of ~365. The
    rows written are checked against the day files' records before any record changes: a
    month whose rows do not add up keeps its day files (its file deleted; a warning: the
    billing is not stopped by its housekeeping). The months merged, the warnings."""
    before = frozen_before(con)
    if before == NOTHING_FROZEN:
        return 0, []
    months = con.execute(
        "select table_name, date_trunc('month', day)::date as month, "
        "count(*) || ' records, ' || count(distinct path) || ' files, ' || sum(rows) "
        "|| ' rows' from day_files "
        "where superseded_at is null and part is null and path is not null "
        "and date_trunc('month', day) + interval 1 month <= $b "
        "group by all having count(distinct path) > 1 order by all",
        {"b": before},
    ).fetchall()
    # a month that could not be merged is tried again only once its files change
    failed = dict(
        con.execute("select key, value from adbill_meta where key like 'not merged:%'").fetchall()
    )
    months = [(t, m, sig) for t, m, sig in months if failed.get(_failed_key(t, m)) != sig]
    if not months:
        return 0, []
    root = state_dir(con)
    # (a retry never writes over a kept one)
    folder = f"{run_id}{MONTH_FOLDER}{uuid.uuid4().hex[:8]}"
    merged: list[tuple[str, date, str, dict[date, int]]] = []
    warnings: list[str] = []
    for table, month, signature in months:
        after = _next_month(month)
        files = [p for _, p in current_files(con, table, month, after)]
        counts = dict(
            con.execute(
                "select day, sum(rows) from day_files where table_name = $t "
                "and superseded_at is null and part is null and path is not null "
                "and day >= $m and day < $a group by day",
                {"t": table, "m": month, "a": after},
            ).fetchall()
        )
        path = root / DAYS_DIR / table / folder / f"{MONTH_PREFIX}{month:%Y-%m}" / "data_0.parquet"
        # (every file of a closed month lies in it: no day range to cut; by name, as files
        # of older columns may be among them)
        try:
            with _unordered(con):  # (as a day's file: DAY_PARQUET's note)
                rows = copy_to_parquet(con, read_sql(con, table, files), path)
            problem = (
                f"its day files hold {rows} rows, day_files records {sum(counts.values())}"
                if rows != sum(counts.values())
                else ""
            )
        except duckdb.Error as e:  # (a file unreadable: the billing goes on without the merge)
            problem = f"{type(e).__name__}: {str(e).splitlines()[0]}"
        if problem:
            path.unlink(missing_ok=True)
            warnings.append(
                f"{table} of {month:%Y-%m} not merged into one file ({problem}); its day files "
                "kept, tried again when they change"
            )
            con.execute(
                "insert or replace into adbill_meta values ($k, $v)",
                {"k": _failed_key(table, month), "v": signature},
            )
            continue
        merged.append((table, month, str(path.relative_to(root)), counts))
    cols = {t: written_columns(con, t) for t, *_ in merged}
    with transaction(con):
        for table, month, path, counts in merged:
            con.execute(
                "update day_files set superseded_at = now() where table_name = $t "
                "and superseded_at is null and part is null and path is not null "
                "and day >= $m and day < $a",
                {"t": table, "m": month, "a": _next_month(month)},
            )
            con.executemany(
                "insert into day_files by name select $1 as table_name, $2 as day, $3 as path, "
                "$4 as rows, $5 as run_id, now() as written_at, $6 as columns",
                [(table, d, path, n, run_id, cols[table]) for d, n in sorted(counts.items())],
            )
            con.execute("delete from adbill_meta where key = ?", [_failed_key(table, month)])
    return len(merged), warnings


def _failed_key(table: str, month: date) -> str:
    return f"not merged:{table}:{month:%Y-%m}"


def _next_month(month: date) -> date:
    return (month.replace(day=28) + timedelta(days=4)).replace(day=1)


# ---------------------------------------------------------------------------------------------
# Collecting what no reader needs any more


def collect(con, keep_seconds: float) -> int:
    """Delete the files superseded more than `keep_seconds` ago (a reader of an older
    warehouse has had them that long) and the files of killed exports no record names; the
    files deleted."""
    root = state_dir(con)
    old = con.execute(  # (a file of several days: once every day of it is superseded, by
        # the latest of them)
        "select path from day_files where path is not null group by path "
        "having bool_and(superseded_at is not null) "
        "and max(superseded_at) < now() - to_seconds($keep)",
        {"keep": float(keep_seconds)},
    ).fetchall()
    gone = 0
    for (path,) in old:
        try:
            (root / path).unlink()
            gone += 1
        except FileNotFoundError:
            pass
    if old:
        con.execute(
            "delete from day_files where superseded_at is not null "
            "and superseded_at < now() - to_seconds($keep)",
            {"keep": float(keep_seconds)},
        )
    gone += _collect_strays(con, root, keep_seconds)
    return gone


def _collect_strays(con, root: Path, keep_seconds: float) -> int:
    """Run directories that no current or kept file lies in (a killed export), once old."""
    rows = con.execute("select path from day_files where path is not null").fetchall()
    named = {Path(p).parts[1:3] for (p,) in rows}
    gone = 0
    now = time.time()
    base = root / DAYS_DIR
    for table_dir in base.iterdir() if base.is_dir() else ():
        for run_dir in table_dir.iterdir():
            if (table_dir.name, run_dir.name) in named:
                continue
            if now - run_dir.stat().st_mtime > keep_seconds:
                gone += sum(1 for _ in run_dir.rglob("*.parquet"))
                shutil.rmtree(run_dir, ignore_errors=True)
    return gone
