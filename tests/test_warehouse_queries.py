"""docs/warehouse.md: every example query runs on a billed generated inbox and returns rows
with the columns its first line documents."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tasks.generate import generate
from tasks.settings import PROJECT_ROOT
from tests.conftest import Inbox
from tests.helpers_issue3 import bill_with_lists

DOC = PROJECT_ROOT / "docs" / "warehouse.md"
BLOCKS = re.findall(r"```sql\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
ANALYST_TABLES = (
    "pools",
    "ledger",
    "rated_events",
    "rejected_events",
    "rejected_orders",
    "customer_days",
    "statements",
    "statement_lines",
    "suspensions",
    "suspension_changes",
    "at_risk",
    "billing_runs",
    "statement_pools",
    "latest_statements",
    "suspension_list",
)


def documented_columns(block: str) -> list[str]:
    first = block.splitlines()[0]
    assert first.startswith("-- columns:"), f"query without a columns line: {first}"
    return [c.strip() for c in first.removeprefix("-- columns:").split(",")]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    inbox = Inbox(tmp_path_factory.mktemp("generated") / "data")
    summary = generate(inbox.root, customers=60, days=20, events_per_day=400, seed=3)
    bill_with_lists(inbox, summary.last_day)
    con = inbox.warehouse()
    yield con
    con.close()


def test_the_warehouse_doc_has_at_least_six_example_queries():
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: documented_columns(b)[0])
def test_example_query_returns_rows_with_its_documented_columns(warehouse, block):
    cur = warehouse.execute(block)
    columns = [d[0] for d in cur.description]
    rows = cur.fetchall()
    assert columns == documented_columns(block)
    assert rows, "the example query returned no rows on the generated inbox"


def test_every_analyst_table_is_documented_with_the_columns_it_has(warehouse):
    text = DOC.read_text(encoding="utf-8")
    for table in ANALYST_TABLES:
        assert re.search(rf"^### .*`{table}`", text, flags=re.M), f"{table} has no section"
        columns = [d[0] for d in warehouse.execute(f"select * from {table} limit 0").description]
        missing = [c for c in columns if f"`{c}`" not in text and c not in text]
        assert not missing, f"{table}: columns not in docs/warehouse.md: {missing}"


def test_the_warehouse_doc_path_is_in_the_repository():
    assert Path(DOC).is_file()
