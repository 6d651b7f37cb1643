"""An open month's statement does not store its queued pools (sql/schema/015): the view
`statement_pools` derives them, so analysts and documents see every pool as before, while a
customer drafted again writes its started pools only. Once the month is final every pool of
its statements is stored, as issued: later orders that move pools do not change them."""

from __future__ import annotations

import shutil
from datetime import date

import duckdb
import pytest

from tasks.db import connect
from tests.conftest import Inbox, event, order, rows
from tests.helpers_issue3 import billed_example
from tests.test_prices import catalog
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


def test_a_final_month_stores_every_pool_of_its_statements_as_issued(billed):
    con = billed_example(billed, mixed_inbox, "2026-12-31").warehouse()
    final = "from {} as p join statements as s using (customer_key, month, revision) "
    final += "where s.status = 'final'"
    stored = rows(con, "select * exclude (customer_key) " + final.format("statement_pool_rows"))
    shown = rows(con, "select * exclude (customer_key) " + final.format("statement_pools"))
    assert sorted(stored) == sorted(shown)  # nothing derived
    assert any(r[13] == "queued" for r in stored)  # (the 14th column: state)
    assert rows(con, UNBALANCED) == []


def test_an_issued_statement_keeps_its_pools_when_a_late_order_moves_them(inbox):
    """x's 12-month professional term (bought 2026-11-10) queues its later months; x is quiet
    after the refresh of 2026-11-20, so the month's last refresh makes its statement final as
    it stands (not drafted again) and stores the queued pools it derived. A 1-month
    professional order bought 2026-11-05, delivered in December, comes first: the term's
    pools move later, November gets a second revision, and the first keeps its pools."""
    inbox.orders([order("a", "x", "professional", 12, "1416", "2026-11-10T10:00:00+08:00")])
    inbox.usage([event("x-1", "x", "copy_generation", 3, "2026-11-12T10:00:00+08:00")])
    inbox.bill("2026-11-20")
    inbox.bill("2026-12-02")
    con = inbox.warehouse()
    carried = "select status from statement_rows where customer_id = 'x' and month = $m"
    assert rows(con, carried, {"m": NOV}) == [("month_to_date",)]  # final by the refresh
    mine = "select * from statement_pools where customer_id = 'x' and month = $m"
    issued = rows(con, mine + " and revision = 1 order by all", {"m": NOV})
    assert [r[-11] for r in issued].count("queued") == 11  # (state)
    stored = "select * from statement_pool_rows where customer_id = 'x' and month = $m"
    assert rows(con, stored + " order by all", {"m": NOV}) == issued
    con.close()
    inbox.orders([order("b", "x", "professional", 1, "118", "2026-11-05T10:00:00+08:00")])
    inbox.bill("2026-12-03")
    con = inbox.warehouse()
    revisions = "select revision from statements where customer_id = 'x' and month = $m"
    assert sorted(r[0] for r in rows(con, revisions, {"m": NOV})) == [1, 2]
    assert rows(con, mine + " and revision = 1 order by all", {"m": NOV}) == issued
    moved = rows(con, mine + " and revision = 2 and order_id = 'a' order by all", {"m": NOV})
    assert moved != [r for r in issued if r[5] == "a"]  # (order_id) the term starts later now
    assert rows(con, UNBALANCED) == []


FREE_BASIC_FROM_NOV_21 = """
[[editions]]
code = "basic"
effective_from = 2026-11-21T00:00:00+08:00
monthly_fee_cny = "0"
"""


def test_an_order_of_no_amount_on_a_quiet_day_drafts_its_statement_again(inbox, tmp_path):
    """An order whose price is 0 moves no figure of its day (no payment, its pools queued),
    yet its pools are part of the statement: the statement is drafted again that day."""
    inbox.settings_overrides = {"catalog_path": catalog(tmp_path, FREE_BASIC_FROM_NOV_21)}
    inbox.orders([order("a", "x", "basic", 1, "30", "2026-11-02T10:00:00+08:00")])
    inbox.bill("2026-11-20")
    inbox.orders([order("b", "x", "basic", 6, "0", "2026-11-21T10:00:00+08:00")])
    inbox.bill("2026-11-22")
    con = inbox.warehouse()
    drafted = "select through_day from statement_rows where customer_id = 'x' and month = $m"
    assert rows(con, drafted, {"m": NOV}) == [(date(2026, 11, 22),)]  # not 20: drafted
    shown = "select state, count(*) from statement_pools where order_id = 'b' group by all"
    assert rows(con, shown) == [("queued", 6)]
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


def test_documents_read_a_warehouse_published_before_015_as_they_read_todays(mid_month, tmp_path):
    """`adbill statement` reads the published warehouse, which may come from before 015 (every
    pool stored in statement_pools) until the next run: the pages show the same pools."""
    from tasks.documents_data import statement_data

    old = tmp_path / "old.duckdb"
    shutil.copy(mid_month.settings.db, old)
    con = duckdb.connect(str(old))
    con.execute("create table main.every_pool as select * from main.statement_pools")
    con.execute("drop view main.statement_pools")
    con.execute("drop view internal.statement_pool_rows")
    con.execute("alter table main.every_pool rename to statement_pools")
    con.close()
    today = connect(mid_month.settings.db, read_only=True)
    before = connect(old, read_only=True)
    try:
        got = [statement_data(c, [NOV], "Asia/Shanghai") for c in (today, before)]
    finally:
        today.close()
        before.close()
    assert [s["pools"] for s in got[0]] == [s["pools"] for s in got[1]]
    assert any(p["state"] == "queued" for s in got[0] for p in s["pools"])
