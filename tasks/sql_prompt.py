"""A SQL prompt on the published warehouse, read-only, with only the project installed.

    uv run python -m tasks.sql_prompt [WAREHOUSE]     (default: $ADBILL_DB or
                                                       <$ADBILL_DATA_DIR>/warehouse.duckdb)

Type SQL ending with `;` (several lines are fine); `.tables` lists the analysts' tables,
`.quit` (or Ctrl-D) leaves. Times are shown in the billing zone. The file is opened
read-only, so a run can publish a new day meanwhile: reconnect (`.reopen`) to see it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb

from tasks.settings import Settings

TABLES = (
    "select table_name as name, comment from duckdb_tables() where comment is not null "
    "union all select view_name, comment from duckdb_views() where comment is not null "
    "order by name"
)


def open_warehouse(path: Path, tz: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path), read_only=True)
    con.execute("set TimeZone = '" + tz.replace("'", "''") + "'")  # a setting, not input
    return con


def run(statement: str, con: duckdb.DuckDBPyConnection, out=None) -> None:
    """Run one statement and print its result (or its error, in one line)."""
    out = out or sys.stdout
    try:
        rel = con.sql(statement)
        if rel is not None:
            print(rel, file=out)
    except duckdb.Error as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=out)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    settings = Settings()
    path = Path(args[0]) if args else settings.db
    if not path.is_file():
        print(f"no warehouse at {path}", file=sys.stderr)
        return 2
    con = open_warehouse(path, settings.billing_tz)
    print(f"{path} (read-only); end statements with ';', .tables, .reopen, .quit", file=sys.stdout)
    pending: list[str] = []
    while True:
        try:
            line = input("adbill> " if not pending else "   ...> ")
        except EOFError:
            break
        command = line.strip()
        if not pending and command in (".quit", ".exit"):
            break
        if not pending and command == ".tables":
            run(TABLES, con)
            continue
        if not pending and command == ".reopen":
            con.close()
            con = open_warehouse(path, settings.billing_tz)
            continue
        pending.append(line)
        if command.endswith(";"):
            run("\n".join(pending), con)
            pending = []
    con.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
