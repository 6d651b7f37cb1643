"""The working DuckDB database: connections, schema and the SQL files that fill it."""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

import duckdb
import polars as pl

from tasks.settings import SQL_DIR

# DuckDB's own buffer pool; it spills to disk beyond this (env ADBILL_DUCKDB_MEMORY)
MEMORY_LIMIT = os.environ.get("ADBILL_DUCKDB_MEMORY", "1GB")


def connect(path: Path | str = ":memory:", read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open a connection with the house settings (UTC session, schema in place)."""
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path), read_only=read_only)
    con.execute("set TimeZone = 'UTC'")
    con.execute(f"set memory_limit = '{MEMORY_LIMIT}'")
    if not read_only:
        ensure_schema(con)
    return con


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create every table and view that does not exist yet."""
    had_usage_days = has_table(con, "usage_days")
    for f in sorted((SQL_DIR / "schema").glob("*.sql")):
        con.execute(f.read_text(encoding="utf-8"))
    ensure_id_hashes(con)
    if not had_usage_days:
        backfill_usage_days(con)


def has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(
        scalar(
            con,
            "select count(*) from duckdb_tables() "
            "where database_name = current_database() and table_name = $name",
            {"name": name},
        )
    )


def backfill_usage_days(con: duckdb.DuckDBPyConnection) -> None:
    """A warehouse billed before usage_days and account_days existed: write theirs for every
    billed day once, from the stored events (statements sum them from then on)."""
    first, last = con.execute("select min(day), max(day) from billed_days").fetchone()
    if first is not None:
        run_sql(con, "usage_days", {"first": first, "last": last})


# events.id_hash = DuckDB's hash(event_id): ~60x cheaper than md5 per event, but DuckDB does
# not promise the same hash across versions. The hash of this probe is kept beside the data;
# when a DuckDB upgrade changes it, every stored id_hash is recomputed once, so duplicate
# checks never compare hashes of two different functions.
ID_HASH_PROBE = "adbill:event_id"


def ensure_id_hashes(con: duckdb.DuckDBPyConnection) -> None:
    """Keep events.id_hash computed by this DuckDB's hash()."""
    now = str(scalar(con, "select hash($p)", {"p": ID_HASH_PROBE}))
    kept = scalar(con, "select value from adbill_meta where key = 'id_hash_probe'")
    if kept == now:
        return
    con.execute("update events set id_hash = hash(event_id)")
    con.execute("insert or replace into adbill_meta values ('id_hash_probe', ?)", [now])


@cache
def sql(name: str) -> str:
    """The text of sql/<name>.sql."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


def run_sql(con: duckdb.DuckDBPyConnection, name: str, params: dict | None = None) -> None:
    """Run sql/<name>.sql with named parameters ($day, $tz, ...)."""
    for statement in sql(name).split(";\n"):
        if statement.strip():
            execute(con, statement, params)


_PARAM = re.compile(r"\$([A-Za-z_]\w*)")


def bind(text: str, params: dict | None) -> dict:
    """The parameters the statement names (DuckDB refuses any extra one)."""
    code = "\n".join(line.split("--", 1)[0] for line in text.splitlines())  # not comments
    names = set(_PARAM.findall(code))
    return {k: v for k, v in (params or {}).items() if k in names}


def frame(con: duckdb.DuckDBPyConnection, text: str, params: dict | None = None) -> pl.DataFrame:
    """A query's result as a Polars frame."""
    return con.sql(text, params=bind(text, params)).pl()


def execute(con: duckdb.DuckDBPyConnection, text: str, params: dict | None = None):
    """Run a statement (or several) with only the parameters it names."""
    return con.execute(text, bind(text, params))


def scalar(con: duckdb.DuckDBPyConnection, text: str, params: dict | None = None):
    """The single value a query returns (its result fully read, so the connection is free)."""
    rows = con.execute(text, bind(text, params)).fetchall()
    return rows[0][0] if rows else None
