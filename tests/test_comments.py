"""Analysts read what each table and column means from the warehouse itself
(COMMENT ON, visible in duckdb_tables(), duckdb_views() and duckdb_columns())."""

from __future__ import annotations

import re
from pathlib import Path

from tasks.db import connect

INTERFACES = Path(__file__).resolve().parents[2] / "shared" / "interfaces.md"
# the warehouse table of interfaces.md, as of this writing (read from the file when present)
TABLES = {
    "pools": "pool_id, customer_id, order_id, source, product, period_index, credits, "
    "amount_cny, available_from, expires_at, remaining",
    "rejected_files": "source_file, reason, detail, ingested_at",
}


def documented() -> dict[str, list[str]]:
    tables = dict(TABLES)
    if INTERFACES.exists():
        for name, cols in re.findall(
            r"^\| `(\w+)` \| [^|]+ \| `([^`]+)`", INTERFACES.read_text(), re.M
        ):
            tables[name] = cols
    return {t: [c.strip() for c in cols.split(",")] for t, cols in tables.items()}


def test_every_documented_table_and_its_key_columns_carry_a_comment():
    con = connect(":memory:")
    comments = dict(
        con.execute(
            "select table_name, comment from duckdb_tables() union all "
            "select view_name, comment from duckdb_views() where not internal"
        ).fetchall()
    )
    tables = documented()
    assert len(tables) >= 2
    for table, columns in tables.items():
        assert comments.get(table), f"{table} has no comment"
        got = dict(
            con.execute(
                "select column_name, comment from duckdb_columns() where table_name = ?", [table]
            ).fetchall()
        )
        described = [c for c in columns if got.get(c)]
        # ids and plain names speak for themselves; the figures must be explained
        assert described == columns, (table, sorted(set(columns) - set(described)))
