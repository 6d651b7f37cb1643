"""The usage row schema (Pandera) and the one-expression `clean` test of
sql/extract_events.sql agree: a line is clean exactly when Pandera finds nothing wrong
with it, so skipping Pandera for clean lines loses no reason (billing-rules §3)."""

from __future__ import annotations

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.db import frame, run_sql, sql
from tasks.inbox_files import _lines_table
from tasks.ingest_usage import keyed
from tasks.validate import (
    CONTROL_CHARACTER,
    EVENT_COLUMNS,
    TIMESTAMP_WITH_OFFSET,
    failing_rows,
    quantity_literal,
)
from tests.test_fuzz_inbox import usage_lines


def extracted(lines: list[bytes]):
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    run_sql(con, "ingest_macros")
    con.create_function(
        "quantity_literal", quantity_literal, ["VARCHAR"], "VARCHAR", null_handling="special"
    )
    con.register("chunk", keyed(_lines_table(b"\n".join(lines), 1), 1, 1))
    params = {"timestamp_pattern": TIMESTAMP_WITH_OFFSET, "control": CONTROL_CHARACTER}
    return frame(con, sql("extract_events"), params)


@settings(max_examples=60, deadline=None, database=None)
@given(st.lists(usage_lines(), min_size=1, max_size=30))
def test_a_line_is_clean_exactly_when_the_row_schema_finds_nothing_wrong(lines):
    facts = extracted(lines)
    failing = set(failing_rows(facts.select(list(EVENT_COLUMNS)), "usage")["index"].to_list())
    unclean = {i for i, clean in enumerate(facts["clean"].to_list()) if not clean}
    assert unclean == failing


def test_a_good_line_is_clean_and_a_bad_one_is_not():
    good = (
        b'{"event_id": "e1", "customer_id": "c1", "account_id": "a1", "function": "f",'
        b' "quantity": 1.5, "status": "succeeded", "occurred_at": "2026-11-26T10:00:00+08:00"}'
    )
    facts = extracted([good, good.replace(b"1.5", b"1.0000001"), b"{}"])
    assert facts["clean"].to_list() == [True, False, False]
