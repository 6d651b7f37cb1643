"""Tables rows are only ever added to (`rejected_events`), written out as the rows each run added.

A rejected line is written once: each successful run writes the rows added since the last
written (`ingested_at` after the watermark kept in adbill_meta) as one zstd Parquet file under
`<state>/days/<table>/<run_id>/`, recorded in `day_files` with part 'appended'; the published
warehouse reads them all (tasks/publish.py), so publishing costs the day's rejects, not every
reject ever. The files are checked against the table (row count) after each write; a table
that lost rows (a killed run's half file taken out again before it was written, a clock set
back) or that has more than MAX_FILES files is written whole as one file instead, the old
ones superseded and collected like the day files.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from tasks.day_files import (
    DAYS_DIR,
    copy_to_parquet,
    current_files,
    literal,
    quoted,
    state_dir,
    table_in,
    written_columns,
)
from tasks.db import scalar, transaction

log = logging.getLogger(__name__)

# table -> the column that orders its rows in time (rows are added with now())
TABLES = {"rejected_events": "ingested_at"}
PART = "appended"
MAX_FILES = 64  # more files than this: written whole as one


def export_appended(con, run_id: str) -> tuple[int, int]:
    """Write the rows each appended table gained since it was last written and record the files
    (in one transaction after they are on disk); (files, rows) written."""
    root = state_dir(con)
    done: list[tuple[str, str | None, int, datetime | None, bool]] = []
    for table, column in TABLES.items():
        done.append(_write(con, root, table, column, run_id))
    with transaction(con):
        for table, path, rows, through, whole in done:
            _record(con, table, path, rows, through, whole, run_id)
    return sum(1 for d in done if d[1]), sum(d[2] for d in done)


def _write(con, root: Path, table: str, column: str, run_id: str):
    """One table's new rows as a file; the whole table when the files no longer add up to it."""
    through = _watermark(con, table)
    files = current_files(con, table, part=PART)
    held = scalar(con, f"select count(*) from {quoted(table)}")
    written = _written_rows(con, table)
    new = scalar(
        con,
        f"select count(*) from {quoted(table)} where {quoted(column)} > $w",
        {"w": through or datetime.min.replace(tzinfo=UTC)},
    )
    whole = through is None or written + new != held or len(files) >= MAX_FILES
    if not whole and not new:
        return table, None, 0, through, False
    if whole and through is not None and written + new != held:
        log.warning("%s: its files do not add up to the table; written whole", table)
    cond = "" if whole else f"where {quoted(column)} > {literal(through.isoformat())}::timestamptz"
    path = root / DAYS_DIR / table / run_id / f"{'whole' if whole else PART}.parquet"
    rows = copy_to_parquet(
        con,
        f"select {written_columns(con, table)} from {quoted(table)} {cond} "
        f"order by {quoted(column)}",
        path,
    )
    last = scalar(con, f"select max({quoted(column)}) from {quoted(table)}")
    return table, str(path.relative_to(root)) if rows else None, rows, last, whole


def _record(con, table, path, rows, through, whole, run_id) -> None:
    if whole:
        con.execute(
            "update day_files set superseded_at = now() where table_name = $t and part = $p "
            "and superseded_at is null",
            {"t": table, "p": PART},
        )
    if path:
        con.execute(
            "insert into day_files by name select $t as table_name, current_date as day, "
            "$path as path, $rows as rows, $run as run_id, now() as written_at, $p as part",
            {"t": table, "path": path, "rows": rows, "run": run_id, "p": PART},
        )
    if through is not None:
        con.execute(
            "insert or replace into adbill_meta values ($k, $v)",
            {"k": _key(table), "v": through.isoformat()},
        )


def _watermark(con, table: str) -> datetime | None:
    """The time of the last row written out (None: nothing written yet)."""
    text = scalar(con, "select value from adbill_meta where key = $k", {"k": _key(table)})
    return datetime.fromisoformat(text) if text else None


def _key(table: str) -> str:
    return f"written_through:{table}"


def files(con, table: str, database: str | None = None) -> list[str] | None:
    """The current files of an appended table when they hold every row of it (None: they do
    not — a data dir never written out — and the table is to be copied)."""
    held = scalar(con, f"select count(*) from {table_in(table, database)}")
    if _written_rows(con, table, database) != held:
        return None
    return [p for _, p in current_files(con, table, database=database, part=PART)]


def _written_rows(con, table: str, database: str | None = None) -> int:
    """The rows the current files of an appended table hold."""
    return scalar(
        con,
        f"select coalesce(sum(rows), 0) from {table_in('day_files', database)} "
        "where table_name = $t and part = $p and superseded_at is null",
        {"t": table, "p": PART},
    )
