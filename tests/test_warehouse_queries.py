"""docs/warehouse.md: every example query runs on a billed generated inbox and returns rows
with the columns its first line documents."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import pytest

from tasks.generate import generate
from tasks.settings import PROJECT_ROOT
from tests.conftest import Inbox, event, order
from tests.helpers_issue3 import bill_with_lists

DOC = PROJECT_ROOT / "docs" / "warehouse.md"
TEXT = DOC.read_text(encoding="utf-8")
BLOCKS = re.findall(r"```sql\n(.*?)```", TEXT, flags=re.S)
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


def block_id(block: str) -> str:
    """The query's first documented column (checked by the test itself, not here)."""
    first = block.splitlines()[0] if block.strip() else ""
    return first.removeprefix("-- columns:").split(",")[0].strip() or "no-columns-line"


def generated_and_billed(data: Path) -> None:
    summary = generate(data, customers=60, days=20, events_per_day=400, seed=3)
    analyst_example(Inbox(data), summary.first_day, summary.last_day)
    bill_with_lists(Inbox(data), summary.last_day)


def analyst_example(inbox: Inbox, first: date, last: date) -> None:
    """A customer the examples must find on the last billed day: a basic subscription (one
    seat) used by two accounts, 14 credits a day, so that 20 credits are left at the end:
    at risk (7 x 20 < 3 x 98), a seat over, credits expiring within 30 days."""
    inbox.orders(
        [order("ax-1", "analyst-example", "basic", 1, "30", f"{first}T09:00:00+08:00")],
        name="zz-analyst-example.csv",
    )
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)][-20:]
    inbox.usage(
        [
            event(
                f"ax-{d}",
                "analyst-example",
                "copy_generation",
                14,
                f"{d}T12:00:00+08:00",
                account_id=f"analyst-a{i % 2}",
            )
            for i, d in enumerate(days)
        ],
        name="zz-analyst-example.jsonl",
    )


@pytest.fixture(scope="module")
def warehouse(billed):
    inbox = Inbox(billed.path(f"{__name__}.generated", generated_and_billed))
    con = inbox.warehouse()
    yield con
    con.close()


def test_the_warehouse_doc_has_at_least_six_example_queries():
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("block", BLOCKS, ids=block_id)
def test_example_query_returns_rows_with_its_documented_columns(warehouse, block):
    cur = warehouse.execute(block)
    columns = [d[0] for d in cur.description]
    rows = cur.fetchall()
    assert columns == documented_columns(block)
    assert rows, "the example query returned no rows on the generated inbox"


def test_every_analyst_table_is_documented_with_the_columns_it_has(warehouse):
    for table in ANALYST_TABLES:
        assert re.search(rf"^### .*`{table}`", TEXT, flags=re.M), f"{table} has no section"
        columns = [d[0] for d in warehouse.execute(f"select * from {table} limit 0").description]
        missing = [c for c in columns if f"`{c}`" not in TEXT and c not in TEXT]
        assert not missing, f"{table}: columns not in docs/warehouse.md: {missing}"


def test_every_table_the_doc_describes_is_in_the_warehouse(warehouse):
    """The other way round: no section or internal table of the doc names a table that is
    not there (renamed or dropped)."""
    analyst = {
        name
        for heading in re.findall(r"^### (.*)$", TEXT, flags=re.M)
        for name in re.findall(r"`(\w+)`", heading)
    }
    internal = set(re.findall(r"^\| `(\w+)` \|", TEXT.split("## Internal tables")[1], re.M))
    assert set(ANALYST_TABLES) <= analyst and len(internal) >= 5
    present = {
        r[0]
        for r in warehouse.execute("select table_name from information_schema.tables").fetchall()
    }
    assert sorted((analyst | internal) - present) == []
