"""A month-to-date statement does not store its queued pools (sql/schema/015): the view
`statement_pools` derives them, so analysts and documents see every pool as before, while a
customer drafted again writes its started pools only. A final statement stores every pool."""

from __future__ import annotations

from datetime import date

import duckdb
import pytest

from tasks.db import connect
from tests.conftest import Inbox, rows
from tests.helpers_issue3 import billed_example
from tests.test_statements import mixed_inbox

pytestmark = pytest.mark.usefixtures("today_after_the_examples")

NOV = date(2026, 11, 1)
# the pools of a statement add up to its figures, queued pools (deferred only) included
UNBALANCED = """
with p as (
    select customer_key, month, revision, sum(deferred_cny) as deferred,
           sum(granted) as granted, sum(used) as used, sum(remaining) as remaining,
           count(*) filter (where state = 'queued') as queued
    from statement_pools group by all
)
select s.customer_id from statements as s join p using (customer_key, month, revision)
where (p.deferred, p.granted, p.used, p.remaining)
      <> (s.deferred_cny, s.granted, s.used, s.closing_balance)
"""
POOLS = "select * exclude (customer_key) from statement_pools order by all"


@pytest.fixture(scope="module")
def mid_month(billed) -> Inbox:
    return billed_example(billed, mixed_inbox, "2026-11-15")


def test_a_month_to_date_statement_stores_no_queued_pool_and_shows_each(mid_month):
    con = mid_month.warehouse()
    stored = rows(con, "select state, count(*) from statement_pool_rows group by all")
    assert "queued" not in dict(stored) and stored
    # m1's 6-month professional term: months 2-6 queued, each deferred in full, nothing else
    queued = rows(
        con,
        "select period_index, granted, opening, used, remaining, revenue_to_date_cny, "
        "deferred_cny = amount_cny from statement_pools "
        "where customer_id = 'm1' and month = $m and state = 'queued' order by period_index",
        {"m": NOV},
    )
    assert [q[0] for q in queued] == [1, 2, 3, 4, 5]
    assert {q[1:] for q in queued} == {(0, 0, 0, 0, 0, True)}
    assert rows(con, UNBALANCED) == []


def test_an_order_paid_after_the_cutoff_is_not_among_the_queued_pools(mid_month):
    con = mid_month.warehouse()
    # p3 (a package) was paid 2026-11-20, after the statement's cutoff
    assert rows(con, "select * from statement_pools where order_id = 'p3'") == []


def test_a_final_statement_stores_its_queued_pools_as_issued(billed):
    con = billed_example(billed, mixed_inbox, "2026-12-31").warehouse()
    stored = dict(
        rows(
            con,
            "select state, count(*) from statement_pool_rows as p join statements as s "
            "using (customer_key, month, revision) where s.status = 'final' group by all",
        )
    )
    assert stored.get("queued", 0) > 0
    assert rows(con, UNBALANCED) == []


def _as_before_015(path) -> None:
    """The working database as the engine before 015 left it: every pool stored, in the table
    statement_pools, and 015 not applied."""
    con = duckdb.connect(str(path))
    con.execute("create temp table every_pool as select * from statement_pools")
    con.execute("drop view statement_pools")
    con.execute("alter table statement_pool_rows rename to statement_pools")
    con.execute("delete from statement_pools")
    con.execute("insert into statement_pools by name select * from every_pool")
    con.execute("delete from schema_migrations where version = 15")
    con.close()


def test_a_data_dir_from_before_loses_no_pool_and_its_next_warehouse_shows_each_once(
    billed, tmp_path
):
    inbox = billed_example(billed, mixed_inbox, "2026-11-15", to=tmp_path / "data")
    before = rows(inbox.warehouse(), POOLS)
    state = inbox.settings.state_db
    _as_before_015(state)
    con = connect(state)  # 015 applied
    try:
        assert rows(con, POOLS) == before
        assert rows(con, "select count(*) from statement_pool_rows where state = 'queued'") == [
            (0,)
        ]
        marked = rows(con, "select count(*) from keyed_changes where not exported")
        assert marked[0][0] > 0  # the statements' next delta files leave the queued pools out
    finally:
        con.close()
    inbox.bill("2026-11-15")  # nothing new: the files written again, the warehouse published
    assert rows(inbox.warehouse(), POOLS) == before
