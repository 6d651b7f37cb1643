"""Tables most of whose rows stay the same from day to day, published as a base file plus the
rows changed since it.

`pools` holds every pool of every customer ever, a month's statements one per customer (with
their lines and pools), and `customers`, `orders`, `order_prices` and the documents written
(`written_documents`) one per customer or order; on a day most customers are quiet, so
copying or rewriting them all would make a day cost the customer base instead of its work.
Each is written whole once (the base) and then, by every run that changes any of it, as the
rows changed since the base (the delta: one file, rewritten); the warehouse reads the base
without the delta's keys, plus the delta (`read_sql`). When the delta outgrows
1/COMPACT_SHARE of the base, a new base is written instead. The files sit beside the day
files (`<state>/days/<table>/<run_id>/`) and are recorded in `day_files` with their `part`,
so they are kept for readers of an older warehouse and collected like them
(tasks/day_files.py).

A table's writers record each key they change in `keyed_changes` (`record_changes`); after
writing a delta the run checks that the files read as the table does, and writes the table
whole (with a warning) if a change was not recorded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from tasks.day_files import (
    DAYS_DIR,
    MONTHLY,
    copy_to_parquet,
    current_files,
    literal,
    quoted,
    state_dir,
    written_columns,
)
from tasks.db import scalar, transaction

log = logging.getLogger(__name__)

WHOLE_TABLE = date(1, 1, 1)  # the `day` of a table not split by month (pools)
# a delta holding more than 1/COMPACT_SHARE of the base's keys is folded into a new base
COMPACT_SHARE = 4


@dataclass(frozen=True)
class Group:
    """Tables written together: their changes are recorded under `name`, by `key`, per month
    when `by_month` (the `day` of their files); the keys of `tables[0]`'s delta are the keys
    every table of the group replaces (a statement redrafted without lines loses its lines)."""

    name: str
    tables: tuple[str, ...]
    key: str
    by_month: bool = False
    # the columns the run's check compares (the key and the columns a writer updates)
    check: tuple[str, ...] = ()

    def keys(self) -> tuple[str, ...]:
        return ("month", self.key) if self.by_month else (self.key,)


GROUPS = (
    Group("pools", ("pools",), "pool_key", check=("remaining", "customer_key")),
    Group("statements", MONTHLY, "customer_key", by_month=True, check=("revision", "fingerprint")),
    Group("customers", ("customers",), "customer_key"),
    Group("orders", ("orders",), "order_key"),
    Group("order_prices", ("order_prices",), "order_key"),
    Group(
        "written_documents",
        ("written_documents",),
        "customer_key",
        by_month=True,
        check=("revision", "fingerprint"),
    ),
)
TABLES = {t: g for g in GROUPS for t in g.tables}


def record_changes(
    con, group: str, keys_sql: str, params: dict | None = None, day: date = WHOLE_TABLE
) -> None:
    """Record the keys a SELECT gives as changed rows of a group's tables, of `day` (the month
    of a statement); its writers call this in the transaction of the change."""
    con.execute(
        f"insert or replace into keyed_changes select distinct {literal(group)}, "
        f"{_date(day)}, k, false from ({keys_sql}) as changed(k)",
        params or {},
    )


@dataclass
class Written:
    """A group's files written for one day (a month, or WHOLE_TABLE)."""

    group: Group
    day: date
    part: str  # 'base' or 'delta'
    files: list[tuple[str, str | None, int]] = field(default_factory=list)  # table, path, rows


def export_keyed(con, run_id: str) -> tuple[int, int]:
    """Write the files every keyed table needs after this run and record them as current, in
    one transaction after they are on disk; (files, rows) written."""
    root = state_dir(con)
    done: list[Written] = []
    for g in GROUPS:
        for day in _days_to_write(con, g):
            w = _write(con, root, g, day, run_id)
            if w.part == "delta" and not _matches(con, root, w):
                log.warning(
                    "%s of %s: the delta does not read as the table; written whole", g.name, day
                )
                w = _write(con, root, g, day, run_id, whole=True)
            done.append(w)
    with transaction(con):
        for w in done:
            _record(con, w, run_id)
    files = sum(1 for w in done for _, path, _ in w.files if path)
    return files, sum(n for w in done for _, _, n in w.files)


def _days_to_write(con, g: Group) -> list[date]:
    """The days (months) of a group with changes not written yet, or rows and no base."""
    pending = con.execute(
        "select distinct day from keyed_changes where table_name = $g and not exported",
        {"g": g.name},
    ).fetchall()
    table = quoted(g.tables[0])
    held = con.execute(
        f"select distinct month from {table}" if g.by_month else f"select $d from {table} limit 1",
        {} if g.by_month else {"d": WHOLE_TABLE},
    ).fetchall()
    based = con.execute(
        "select day from day_files where table_name = $t and part = 'base' "
        "and superseded_at is null",
        {"t": g.tables[0]},
    ).fetchall()
    first_time = {r[0] for r in held} - {r[0] for r in based}
    return sorted({r[0] for r in pending} | first_time)


def _write(con, root: Path, g: Group, day: date, run_id: str, whole=False) -> Written:
    """The group's files of one day: a base (every row of the day's tables) when there is none
    yet, when a changed key has no row any more, when the changes outgrow 1/COMPACT_SHARE of
    the base, or when `whole`; else a delta (the rows of every key changed since the base)."""
    base_keys = scalar(
        con,
        "select max(rows) from day_files where table_name = $t and day = $d and part = 'base' "
        "and superseded_at is null",
        {"t": g.tables[0], "d": day},
    )
    anchor, key = quoted(g.tables[0]), quoted(g.key)
    in_day = f"t.month = {_date(day)} and " if g.by_month else ""
    changed, gone = con.execute(
        f"select count(*), count(*) filter (where not exists (select 1 from {anchor} as t "
        f"where {in_day}t.{key} = c.key)) "
        "from keyed_changes as c where c.table_name = $g and c.day = $d",
        {"g": g.name, "d": day},
    ).fetchall()[0]
    whole = whole or base_keys is None or gone > 0 or changed * COMPACT_SHARE > max(base_keys, 1)
    w = Written(g, day, "base" if whole else "delta")
    for table in g.tables:
        where = [f"month = {_date(day)}"] if g.by_month else []
        if not whole:
            where.append(
                f"{key} in (select key from keyed_changes where table_name = "
                f"{literal(g.name)} and day = {_date(day)})"
            )
        cond = f"where {' and '.join(where)}" if where else ""
        out = root / DAYS_DIR / table / run_id / (f"month={day}" if g.by_month else "")
        path = out / f"{w.part}.parquet"
        rows = copy_to_parquet(
            con, f"select {written_columns(con, table)} from {quoted(table)} {cond}", path
        )
        w.files.append((table, str(path.relative_to(root)) if rows else None, rows))
    return w


def _date(d: date) -> str:
    return f"date '{d.isoformat()}'"


def _matches(con, root: Path, w: Written) -> bool:
    """Whether the day's base with the new delta reads as the table does (row count and a hash
    of the keys and the columns writers update): nothing changed that its writer did not
    record."""
    g = w.group
    table = g.tables[0]
    path = w.files[0][1]
    bases = [p for d, p in current_files(con, table, part="base") if d == w.day]
    deltas = [str(root / path)] if path else []
    cols = ", ".join(quoted(c) for c in (*g.keys(), *g.check))
    digest = f"select count(*), bit_xor(hash({cols})) from "
    own = f"where month = {_date(w.day)}" if w.group.by_month else ""
    files = read_sql(con, table, bases, deltas, deltas)
    return (
        con.execute(f"{digest} ({files})").fetchall()
        == con.execute(f"{digest} {quoted(table)} {own}").fetchall()
    )


def _record(con, w: Written, run_id: str) -> None:
    """A group's new files recorded as current: a base replaces the day's base and delta (and
    a file from before this layout), a delta the delta; the changes they hold marked."""
    for table, path, rows in w.files:
        con.execute(
            "update day_files set superseded_at = now() where superseded_at is null "
            "and table_name = $t and day = $d and (part = 'delta' or $base)",
            {"t": table, "d": w.day, "base": w.part == "base"},
        )
        con.execute(
            "insert into day_files by name select $t as table_name, $d as day, $path as path, "
            "$rows as rows, $run as run_id, now() as written_at, $part as part",
            {"t": table, "d": w.day, "path": path, "rows": rows, "run": run_id, "part": w.part},
        )
    params = {"g": w.group.name, "d": w.day}
    if w.part == "base":
        con.execute("delete from keyed_changes where table_name = $g and day = $d", params)
    else:
        con.execute(
            "update keyed_changes set exported = true where table_name = $g and day = $d", params
        )


def files(con, table: str, database: str | None = None) -> tuple[list, list, list]:
    """A keyed table's current base and delta files (absolute paths, every day) and its
    group's first table's delta files (whose keys the bases lose)."""
    g = TABLES[table]

    def listed(t: str, part: str) -> list[str]:
        return [p for _, p in current_files(con, t, database=database, part=part)]

    return listed(table, "base"), listed(table, "delta"), listed(g.tables[0], "delta")


def read_sql(
    con, table: str, bases: list, deltas: list, key_deltas: list, database: str | None = None
) -> str:
    """A SELECT of a keyed table from its files: the bases without the rows whose keys are in
    `key_deltas`, plus the `deltas`."""
    cols = written_columns(con, table, database)
    keys = ", ".join(quoted(k) for k in TABLES[table].keys())

    def read(paths: list) -> str:
        return f"read_parquet([{', '.join(literal(p) for p in paths)}], union_by_name = true)"

    parts = []
    if bases and key_deltas:
        parts.append(
            f"select {cols} from {read(bases)} as b "
            f"anti join (select distinct {keys} from {read(key_deltas)}) as d using ({keys})"
        )
    elif bases:
        parts.append(f"select {cols} from {read(bases)}")
    if deltas:
        parts.append(f"select {cols} from {read(deltas)}")
    return " union all ".join(parts) if parts else ""
