"""The published warehouse: one small DuckDB file analysts open read-only.

It holds a copy of the small tables of the working database and, for the per-day tables
(tasks/day_files.py), views over the day files the working state already keeps, for the
keyed ones (pools, statements: tasks/keyed_files.py) a view over their base files and the
rows changed since, and for rejected_events a view over the files of the rows each run added
(tasks/appended_files.py): publishing costs
the small tables and what the run changed, not the history, and the history is on disk once.
Each publish writes a new file beside the old one and renames it over it: a reader that has
the old file open keeps reading it (and the day files it names, kept for
`keep_old_files_seconds` after they are superseded), a new reader sees the new one, nobody
sees half of it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb

from tasks import appended_files as appended
from tasks import keyed_files as keyed
from tasks.day_files import PARTITIONED, current_files, literal, quoted, read_sql, uniform
from tasks.db import set_threads, transaction

# the run lock lived here; tasks.pipeline still imports it from this module
from tasks.run_lock import DataDirBusy, run_lock  # noqa: F401
from tasks.settings import duckdb_threads

STATE = "adbill_state"  # the working database, attached read-only while the file is built
# the engine's own tables, out of the analysts' way in the warehouse (schema `internal`;
# `internal.events` etc. for who needs them): the views analysts query read them
INTERNAL_SCHEMA = "internal"
INTERNAL = frozenset(
    {
        "events",
        "ledger_entries",
        "ingested_files",
        "inbox_seen",
        "order_prices",
        "written_documents",
        "adbill_meta",
        "schema_migrations",
        "day_files",
        "day_exports",
        "day_changes",
        "keyed_changes",
        "statement_rows",
        "statement_months",
        "statement_pool_rows",
    }
)


def publish(state_db: Path, target: Path) -> Path:
    """Replace the published warehouse in one step with one built from the (closed) working db."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.*.tmp*"):  # left by a killed publish
        stale.unlink(missing_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    threads = duckdb_threads()
    try:
        con = duckdb.connect(str(tmp))
        try:
            con.execute("set TimeZone = 'UTC'")
            set_threads(con, threads)
            con.execute(f"attach {literal(str(state_db))} as {STATE} (read_only)")
            with transaction(con):  # one commit, not one per table, view and comment
                build(con)
            con.execute(f"detach {STATE}")
            # (the commit is in the .wal; close() merges it into the file, and on a full disk
            # fails without a word, leaving a file without tables: a checkpoint raises)
            try:
                con.execute("checkpoint")
            except duckdb.Error as exc:
                raise PublishIncomplete(_incomplete(tmp, str(exc))) from exc
        finally:
            con.close()
        _check_whole(tmp)
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_name(tmp.name + ".wal").unlink(missing_ok=True)
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return target


class PublishIncomplete(OSError):
    """The new warehouse file was not written whole (a full disk, a file size limit): the
    published one is left as it was. An OSError: the flow retries publish like one."""


def _check_whole(tmp: Path) -> None:
    """The new file holds the warehouse, its log merged: else PublishIncomplete, before it
    can replace the published one (a full `--db` disk replaced a good warehouse with an
    empty file, and the run said it succeeded)."""
    wal = tmp.with_name(tmp.name + ".wal")
    left = wal.stat().st_size if wal.exists() else 0
    found = None
    if not left:
        try:
            con = duckdb.connect(str(tmp), read_only=True)
            try:
                found = con.execute(
                    "select count(*) from duckdb_tables() where (schema_name, table_name) in "
                    "(('main', 'billing_runs'), ($internal, 'adbill_meta'))",
                    {"internal": INTERNAL_SCHEMA},
                ).fetchone()[0]
            finally:
                con.close()
        except duckdb.Error:
            found = None
    if left or found != 2:
        raise PublishIncomplete(_incomplete(tmp, "its log was not merged into it"))


def _incomplete(tmp: Path, cause: str) -> str:
    cause = cause.split("because of error: ")[-1].strip()[:120]
    return (
        f"the new warehouse could not be written whole in {tmp.parent} ({cause}; is that disk "
        "full?): the published warehouse is left as it was"
    )


def build(con: duckdb.DuckDBPyConnection) -> None:
    """Every table of the attached working database as a table (small ones: copied) or a view
    (per-day ones: over their current day files), its views, and every comment."""
    tables = con.execute(
        "select table_name from duckdb_tables() where database_name = $db "
        "and schema_name = 'main' order by table_name",
        {"db": STATE},
    ).fetchall()
    con.execute(f"create schema {INTERNAL_SCHEMA}")
    for (table,) in tables:
        name = qualified(table)
        source = f"{STATE}.main.{quoted(table)}"
        by_day = table in PARTITIONED
        files = [p for _, p in current_files(con, table, database=STATE)] if by_day else None
        select = ""
        if table in keyed.TABLES:  # its base files, without the rows changed since, + those
            select = keyed.read_sql(con, table, *keyed.files(con, table, STATE), STATE)
        elif table in appended.TABLES:  # the files of the rows each run added
            added = appended.files(con, table, STATE)
            if added:
                select = read_sql(con, table, added, database=STATE)
        if select:
            con.execute(f"create view {name} as {select}")
        elif files:
            same = uniform(con, table, database=STATE)
            select = read_sql(con, table, files, database=STATE, by_name=not same)
            con.execute(f"create view {name} as {select}")
        elif by_day:  # nothing written yet: an empty table of the same shape
            con.execute(f"create table {name} as select * from {source} limit 0")
        else:
            con.execute(f"create table {name} as select * from {source}")
    _views(con)
    _comments(con)


def qualified(table: str) -> str:
    """A table's name in the warehouse: in `internal` for the engine's own tables."""
    return f"{INTERNAL_SCHEMA}.{quoted(table)}" if table in INTERNAL else f"main.{quoted(table)}"


def _views(con) -> None:
    """The working database's views, created again here, each after the views it reads (a
    failed CREATE would abort the publish's transaction: no trial and error)."""
    views = con.execute(
        "select view_name, sql from duckdb_views() where database_name = $db "
        "and schema_name = 'main' and not internal order by view_name",
        {"db": STATE},
    ).fetchall()
    selects = {name: _select_of(con, name, text) for name, text in views}
    created: set[str] = set()
    while len(created) < len(selects):
        ready = [
            name
            for name, (_, reads) in selects.items()
            if name not in created and not (reads & selects.keys()) - created - {name}
        ]
        if not ready:
            names = ", ".join(sorted(selects.keys() - created))
            raise RuntimeError(f"the warehouse's views {names} read one another in a circle")
        for name in ready:
            con.execute(f"create view main.{quoted(name)} as {selects[name][0]}")
            created.add(name)


def _select_of(con, name: str, text: str) -> tuple[str, set[str]]:
    """The SELECT of a view's CREATE text, with the engine's tables it reads named in
    `internal` (DuckDB's own parser: json_serialize_sql, then back to SQL), and the names of
    the tables and views it reads."""
    head = f"CREATE VIEW {name} AS "
    if not text.startswith(head):
        raise RuntimeError(f"unexpected definition of view {name}: {text[:80]}")
    select = text[len(head) :].rstrip().rstrip(";")
    [(tree,)] = con.execute("select json_serialize_sql($q)", {"q": select}).fetchall()
    parsed = json.loads(tree)
    if parsed.get("error"):
        raise RuntimeError(f"view {name} does not parse: {parsed.get('error_message')}")
    reads: set[str] = set()
    _qualify(parsed, reads)
    [(back,)] = con.execute("select json_deserialize_sql($t)", {"t": json.dumps(parsed)}).fetchall()
    return back, reads


def _qualify(node, reads: set[str]) -> None:
    """Every reference to an engine table in a parsed statement named in `internal`; the
    names of every table or view referenced added to `reads`."""
    if isinstance(node, dict):
        if node.get("type") == "BASE_TABLE":
            reads.add(node.get("table_name"))
            if node.get("table_name") in INTERNAL and not node.get("schema_name"):
                node["schema_name"] = INTERNAL_SCHEMA
                node["qualified_name"] = {"path": [INTERNAL_SCHEMA, node["table_name"]]}
        for value in node.values():
            _qualify(value, reads)
    elif isinstance(node, list):
        for value in node:
            _qualify(value, reads)


def _comments(con) -> None:
    """The comments analysts read (COMMENT ON in sql/schema), on the same tables and views."""
    objects = con.execute(
        "select table_name, comment from duckdb_tables() where database_name = $db "
        "and schema_name = 'main' and comment is not null union all "
        "select view_name, comment from duckdb_views() where database_name = $db "
        "and schema_name = 'main' and comment is not null",
        {"db": STATE},
    ).fetchall()
    kinds = dict(
        con.execute(
            "select table_name, 'table' from duckdb_tables() where database_name = "
            "current_database() union all select view_name, 'view' from duckdb_views() "
            "where database_name = current_database() and not internal"
        ).fetchall()
    )
    for name, comment in objects:
        con.execute(f"comment on {kinds[name]} {qualified(name)} is {literal(comment)}")
    cols = con.execute(
        "select table_name, column_name, comment from duckdb_columns() where database_name = "
        "$db and schema_name = 'main' and comment is not null",
        {"db": STATE},
    ).fetchall()
    for table, column, comment in cols:
        con.execute(f"comment on column {qualified(table)}.{quoted(column)} is {literal(comment)}")
