"""The working DuckDB database: connections, schema migrations and the SQL files that fill it."""

from __future__ import annotations

import hashlib
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

if TYPE_CHECKING:  # Polars is imported where frames are made: a command that makes none
    import polars as pl  # (adbill statement, status) starts faster

from tasks.settings import SQL_DIR, duckdb_memory, duckdb_threads

# DuckDB's own buffer pool; it spills to disk beyond this. None: ADBILL_DUCKDB_MEMORY (read
# and checked on every connect, tasks.settings.duckdb_memory), default 1GB
MEMORY_LIMIT: str | None = None

# sql/schema/NNN_name.sql: the numbered migrations, applied in order (see ensure_schema)
SCHEMA_DIR = SQL_DIR / "schema"
_MIGRATION_FILE = re.compile(r"(\d+)_(\w+)\.sql")


class DamagedDatabase(RuntimeError):
    """A DuckDB file that cannot be opened because its bytes are not a sound database."""


# what DuckDB says of a file whose bytes are damaged (a lock held elsewhere is not damage)
_DAMAGE = (
    "corrupt database file",
    "not a valid duckdb database file",
    "could not read enough bytes",
    "checksum",
)


# local_midnight(tz, d): the first instant of the local day d in zone tz (billing-rules §1:
# a day runs from its local midnight to the next); Python asks it of DuckDB (local_midnight
# below). DuckDB's own timezone(tz, d::timestamp) is that instant on every day but the few
# whose midnight a DST change skips or repeats (America/Havana, America/Santiago,
# Africa/Cairo, Asia/Beirut, ...): there it gave an instant before the day began (a skipped
# midnight in Havana) or the second of two midnights (a repeated one), so a pool's expiry and
# the day's cutoff disagreed with the days events are dated on. The guess is moved forward to
# where the day begins (a skipped midnight), then back to the first of two midnights.
LOCAL_MIDNIGHT = """
create or replace temp macro _midnight_forward(tz, d, m) as
    case
        when timezone(tz, m)::date < d::date then m + (d::timestamp - timezone(tz, m))
        else m
    end;
create or replace temp macro _midnight_back(tz, d, m, first) as
    case when first < m and timezone(tz, first)::date >= d::date then first else m end;
create or replace temp macro _midnight_first(tz, d, m) as
    _midnight_back(
        tz, d, m, (m - interval 3 hour) + (d::timestamp - timezone(tz, m - interval 3 hour))
    );
create or replace temp macro local_midnight(tz, d) as
    _midnight_first(tz, d, _midnight_forward(tz, d, timezone(tz, d::timestamp)));
"""


def local_midnight(day: date, tz: str) -> datetime:
    """The SQL macro local_midnight's instant (UTC) for Python: the first instant of the local
    day `day` in zone `tz`. Asked of DuckDB, not computed with zoneinfo: Python's time-zone
    data and DuckDB's can be of different versions (America/Havana's end of DST in 2026: an
    hour apart), and the pools and prices Python dates must meet the days SQL dates. A year's
    midnights at a time (a query each took ~3 ms: a renewal queue's days one by one cost a
    1M-event day ~0.4 s)."""
    return _year_of_midnights(day.year, tz)[day]


@lru_cache(maxsize=4096)
def _year_of_midnights(year: int, tz: str) -> dict[date, datetime]:
    rows = _zone_query(
        "select d::date, local_midnight($tz, d::date) from range(make_date($y, 1, 1), "
        "make_date($y, 12, 31) + 1, interval 1 day) as r(d)",
        {"tz": tz, "y": year},
    )
    return {day: at.astimezone(UTC) for day, at in rows}


@lru_cache(maxsize=65536)
def local_instant(local: datetime, tz: str) -> datetime:
    """A local date and time without a zone, as an instant (UTC) in `tz`, as DuckDB's
    timezone() reads it (see local_midnight)."""
    [(at,)] = _zone_query("select timezone($tz, $at::timestamp)", {"tz": tz, "at": local})
    return at.astimezone(UTC)


def local_day(at: datetime, tz: str) -> date:
    """The local day of an instant in `tz`, as DuckDB dates it (see local_midnight)."""
    [(day,)] = _zone_query("select timezone($tz, $at::timestamptz)::date", {"tz": tz, "at": at})
    return day


@lru_cache(maxsize=64)
def zone_known(tz: str) -> bool:
    """Whether DuckDB's time-zone data names `tz` (Python's also takes `localtime`, the
    machine's zone, which DuckDB does not: a run would stop at its first date)."""
    named = "select count(*) from pg_timezone_names() where name = $tz"
    return bool(_zone_query(named, {"tz": tz})[0][0])


_zones: list[duckdb.DuckDBPyConnection] = []
_zones_lock = threading.Lock()


def _zone_query(text: str, params: dict):
    with _zones_lock:  # (one small in-memory database for the process, a query at a time)
        if not _zones:
            con = duckdb.connect()
            con.execute("set TimeZone = 'UTC'")
            con.execute(LOCAL_MIDNIGHT)
            _zones.append(con)
        return _zones[0].execute(text, params).fetchall()


def connect(path: Path | str = ":memory:", read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open a connection with the house settings (UTC session, DuckDB's memory limit and
    threads as ADBILL_DUCKDB_MEMORY and ADBILL_DUCKDB_THREADS say, schema in place)."""
    memory_limit = MEMORY_LIMIT or duckdb_memory()  # (a bad ADBILL_DUCKDB_MEMORY: refused)
    threads = duckdb_threads()  # (and a bad ADBILL_DUCKDB_THREADS, before the file is opened)
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.Error as exc:
        if (error := damaged(path, exc)) is not None:
            raise error from exc
        raise
    con.execute("set TimeZone = 'UTC'")
    con.execute(f"set memory_limit = '{memory_limit}'")
    set_threads(con, threads)
    con.execute(LOCAL_MIDNIGHT)
    if not read_only:
        ensure_schema(con)
    elif scalar(con, "select count(*) from duckdb_schemas() where schema_name = 'internal'"):
        # the published warehouse keeps the engine's own tables apart (tasks/publish.py);
        # the engine's reports read them there by their plain names
        con.execute("set search_path = 'main,internal'")
    return con


def set_threads(con, threads: int | None) -> None:
    """DuckDB's worker threads on this connection's database: `threads` (read from
    ADBILL_DUCKDB_THREADS by tasks.settings.duckdb_threads), None: one per core."""
    if threads is not None:
        con.execute(f"set threads = {int(threads)}")


def damaged(path: Path | str, exc: BaseException) -> DamagedDatabase | None:
    """The error to tell when DuckDB could not open `path` because the file is damaged: its
    path and what to do (the working state: restore it, docs/operating.md §17); None for any
    other error (a lock held by another process, a permission)."""
    path = Path(path)
    # (the path named in the message is no evidence: a folder may be called `checksum`)
    reason = " ".join(str(exc).replace(f'"{path}"', "the file").split())
    if not any(d in reason.lower() for d in _DAMAGE):
        return None
    reason = reason if len(reason) <= 60 else reason[:57] + "..."
    if path.name == "adbill.duckdb" and path.parent.name == "state":
        # (DuckDB's own words are in the log: the one line is cut at ~300 characters)
        return DamagedDatabase(
            f"the working state {path} is damaged: restore state/ from a backup "
            "(docs/operating.md §17)"
        )
    return DamagedDatabase(f"the DuckDB file {path} is damaged; DuckDB: {reason}")


# ---------------------------------------------------------------------------------------------
# Schema migrations: each sql/schema/NNN_name.sql is applied once, in order, in a transaction,
# and recorded in schema_migrations with the sha256 of its text. The files are written to be
# re-runnable (create ... if not exists, create or replace view, add column if not exists,
# guarded updates), so a warehouse made before schema_migrations existed is brought forward by
# applying each of them once, and a file edited after it was applied (a view changed) is
# applied again once. A change that is not safe to repeat goes in a new number.


@dataclass(frozen=True)
class Migration:
    """One numbered file of sql/schema: its version, name, text and that text's digest."""

    version: int
    name: str
    path: Path
    text: str
    checksum: str


def migrations(schema_dir: Path | None = None) -> list[Migration]:
    """The numbered files of sql/schema, in order (read again only when a file changes)."""
    found = []
    for path in sorted((schema_dir or SCHEMA_DIR).glob("*.sql")):
        st = path.stat()
        found.append(_migration(path, st.st_mtime_ns, st.st_size))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        twice = sorted({v for v in versions if versions.count(v) > 1})
        raise ValueError(
            f"Two schema files in {schema_dir or SCHEMA_DIR} share number {twice[0]:03d}; "
            "give one of them the next free number."
        )
    return sorted(found, key=lambda m: m.version)


@cache
def _migration(path: Path, mtime_ns: int, size: int) -> Migration:
    match = _MIGRATION_FILE.fullmatch(path.name)
    if match is None:
        raise ValueError(f"Schema file {path} is not named NNN_name.sql; number it.")
    text = path.read_text(encoding="utf-8")
    checksum = hashlib.sha256(text.encode()).hexdigest()
    return Migration(int(match[1]), match[2], path, text, checksum)


def _statements_to_rows(con: duckdb.DuckDBPyConnection) -> None:
    """Before 011: the table `statements` renamed statement_rows (the name is the view's from
    then on) — once: SQL cannot say "if it is still a table", and migrations must be
    re-runnable."""
    if scalar(
        con,
        "select count(*) from duckdb_tables() where database_name = current_database() "
        "and schema_name = 'main' and table_name = 'statements'",
    ):
        con.execute("drop view if exists latest_statements")  # re-created by the migration
        con.execute("alter table statements rename to statement_rows")


def _statement_pools_to_rows(con: duckdb.DuckDBPyConnection) -> None:
    """Before 015: the table `statement_pools` renamed statement_pool_rows (the name is the
    view's from then on) — once, as for 011."""
    if scalar(
        con,
        "select count(*) from duckdb_tables() where database_name = current_database() "
        "and schema_name = 'main' and table_name = 'statement_pools'",
    ):
        con.execute("alter table statement_pools rename to statement_pool_rows")


# a step a migration needs that SQL cannot guard, run just before its file, in its transaction
BEFORE = {11: _statements_to_rows, 15: _statement_pools_to_rows}


def ensure_schema(con: duckdb.DuckDBPyConnection, schema_dir: Path | None = None) -> None:
    """Apply the schema migrations this database lacks; keep id_hash in step with DuckDB."""
    applied = applied_migrations(con)
    pending = [m for m in migrations(schema_dir) if applied.get(m.version) != m.checksum]
    if pending:
        con.execute(
            "create table if not exists schema_migrations ("
            "version integer primary key, name varchar, applied_at timestamptz, checksum varchar)"
        )
        for m in pending:
            apply_migration(con, m, again=m.version in applied)
    ensure_id_hashes(con)


def applied_migrations(con: duckdb.DuckDBPyConnection) -> dict[int, str]:
    """Version -> checksum of every migration recorded (none before schema_migrations exists)."""
    try:
        return dict(con.execute("select version, checksum from schema_migrations").fetchall())
    except duckdb.CatalogException:
        return {}


def apply_migration(con: duckdb.DuckDBPyConnection, m: Migration, again: bool = False) -> None:
    """Run one migration file and record it (again: its text changed), in one transaction."""
    con.execute("begin transaction")
    try:
        if m.version in BEFORE:
            BEFORE[m.version](con)
        for statement in parse(con, m.text):
            con.execute(statement)
        record = (
            "update schema_migrations set name = $name, applied_at = now(), checksum = $checksum "
            "where version = $version"
            if again
            else "insert into schema_migrations values ($version, $name, now(), $checksum)"
        )
        con.execute(record, {"version": m.version, "name": m.name, "checksum": m.checksum})
        con.execute("commit")
    except duckdb.Error as e:
        con.execute("rollback")
        if applied_migrations(con).get(m.version) == m.checksum:
            return  # another connection to this database applied it meanwhile
        raise RuntimeError(
            f"Schema migration {m.path} failed and was rolled back ({e}); fix the file and rerun."
        ) from e


# events.id_hash = DuckDB's hash(event_id): ~60x cheaper than md5 per event, but DuckDB does
# not promise the same hash across versions. The hash of this probe is kept beside the data;
# when a DuckDB upgrade changes it, every stored id_hash is recomputed once, so duplicate
# checks never compare hashes of two different functions. Checked on every connect: it depends
# on the DuckDB that opens the file, not on the schema.
ID_HASH_PROBE = "adbill:event_id"


def ensure_id_hashes(con: duckdb.DuckDBPyConnection) -> None:
    """Keep events.id_hash computed by this DuckDB's hash()."""
    [(now, kept)] = con.execute(  # fetchall: the connection is left with no open result
        "select hash($p)::varchar, (select value from adbill_meta where key = 'id_hash_probe')",
        {"p": ID_HASH_PROBE},
    ).fetchall()
    if kept == now:
        return
    con.execute("update events set id_hash = hash(event_id)")
    con.execute("insert or replace into adbill_meta values ('id_hash_probe', ?)", [now])


# ---------------------------------------------------------------------------------------------
# SQL text: DuckDB's own parser splits it into statements and names each one's $parameters
# (a `;`, `--` or `$x` inside a literal or a comment is not mistaken for one). Parsed once per
# text: sql/*.sql files run per batch of the hot path.

_PARSED: dict[str, list[duckdb.Statement]] = {}
_PARSED_MAX = 1024  # texts built at run time must not grow the cache without bound


def parse(con: duckdb.DuckDBPyConnection, text: str) -> list[duckdb.Statement]:
    """The statements of a text, parsed by DuckDB (cached per text)."""
    parsed = _PARSED.get(text)
    if parsed is None:
        parsed = con.extract_statements(text)
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[text] = parsed
    return parsed


def _params(statement: duckdb.Statement, params: dict | None) -> dict | None:
    """The parameters the statement names (DuckDB refuses any extra one)."""
    names = statement.named_parameters
    if not names or not params:
        return None
    return {k: v for k, v in params.items() if k in names}


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection):
    """One transaction around the block: committed when it ends, rolled back when it raises."""
    con.execute("begin transaction")
    try:
        yield
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


@cache
def sql(name: str) -> str:
    """The text of sql/<name>.sql."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


def run_sql(con: duckdb.DuckDBPyConnection, name: str, params: dict | None = None) -> None:
    """Run sql/<name>.sql with named parameters ($day, $tz, ...)."""
    for statement in parse(con, sql(name)):
        con.execute(statement, _params(statement, params))


def execute(con: duckdb.DuckDBPyConnection, text: str, params: dict | None = None):
    """Run a statement (or several) with only the parameters each names; the last one's result."""
    result = None
    for statement in parse(con, text):
        result = con.execute(statement, _params(statement, params))
    return result


def frame(con: duckdb.DuckDBPyConnection, text: str, params: dict | None = None) -> pl.DataFrame:
    """A query's result as a Polars frame (statements before the last one run first)."""
    *before, last = parse(con, text)
    for statement in before:
        con.execute(statement, _params(statement, params))
    if before:
        con.complete()
    return con.sql(last, params=_params(last, params)).pl()


def scalar(con: duckdb.DuckDBPyConnection, text: str, params: dict | None = None):
    """The single value a query returns (its result fully read, so the connection is free)."""
    rows = execute(con, text, params).fetchall()
    return rows[0][0] if rows else None
