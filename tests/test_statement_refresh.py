"""A month's statements are drafted again only for the customers with something new since
they were last refreshed (sql/statement_customers.sql); a quiet customer's statement is
carried to the day as it stands. Through daily runs, late data into the month and into the
previous month's last day (the opening of the next), a run killed between the days of a
catch-up and a rebill, the statements are those of an engine that drafts every customer's
statement on every refresh, summing the whole month each time (a refresh after only new days
adds them to the statements as they stand: tasks/statements.py first_day_summed)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

import tasks.statements
from tests.ops_helpers import (
    assert_same,
    bill,
    deliver,
    fail_at,
    query,
    scenario,
    snapshot,
    warehouse,
    write_usage,
)

# Nov 22 - Dec 7: a month's end in the middle; 3 events a day among 8 customers, so most
# customers are quiet on most days
SC = scenario(days=16, customers=8, events_per_day=3, seed=5, start=date(2026, 11, 22))
# c01 (a heavy user, its pools drained) also bought a month on Oct 26: that pool expires
# empty at the cutoff of Nov 24 as the renewal queued behind it starts, a day c01 is quiet
# (asserted below): the statement changes with no figure of the day
_basic = next(o for o in SC.orders if o["product"] == "basic" and o["term_months"] == "1")
SC.orders.append(
    {
        **_basic,
        "order_id": "o000",
        "customer_id": "c01",
        "purchased_at": "2026-10-26T10:00:00+08:00",
    }
)
# its usage on Oct 27 drains it
SC.events[date(2026, 10, 27)] = [
    json.dumps(
        {
            "event_id": f"e-early-{i}",
            "customer_id": "c01",
            "account_id": "c01-a0",
            "function": "image_to_video",
            "quantity": 30,
            "status": "succeeded",
            "occurred_at": "2026-10-27T12:00:00+08:00",
        }
    )
    for i in range(2)
]
SC.bad[date(2026, 10, 27)] = []
# c09 buys a month on Nov 22 and is quiet but for one event on Nov 29 that arrives late,
# after December's first days: its December opening changes, on no day it is active in
SC.orders.append(
    {
        **_basic,
        "order_id": "o999",
        "customer_id": "c09",
        "purchased_at": "2026-11-22T09:00:00+08:00",
    }
)
LATE_C09 = json.dumps(
    {
        "event_id": "e-late-c09",
        "customer_id": "c09",
        "account_id": "c09-a0",
        "function": "custom_avatar",
        "quantity": 1,
        "status": "succeeded",
        "occurred_at": "2026-11-29T15:00:00+08:00",
    }
)
TABLES = ("statements", "statement_lines", "statement_pools", "customer_days")


def daily(data: Path, first: int, last: int, snaps: list[dict]) -> None:
    """Days first..last, a run each, each run's statements (and day figures) in `snaps`."""
    for n in range(first, last + 1):
        deliver(data, SC, since=SC.day(n), through=SC.day(n), part="first", days_per_file=1)
        bill(data, SC.day(n))
        snaps.append(snapshot(data, tables=TABLES))


def history(data: Path) -> list[dict]:
    """The runs, and the statements (with the day figures) after each."""
    snaps = []

    def snap() -> None:
        snaps.append(snapshot(data, tables=TABLES))

    deliver(data, SC, through=date(2026, 10, 31))  # the October order's usage
    daily(data, 1, 6, snaps)
    # the other half of days 3-4 arrives late, with day 7
    deliver(data, SC, since=SC.day(3), through=SC.day(4), part="second", prefix="late-")
    daily(data, 7, 10, snaps)  # day 9 is Nov 30: November final; day 10 opens December
    # late data for Nov 30: November's finals revised, December's openings change
    deliver(data, SC, since=SC.day(9), through=SC.day(9), part="second", prefix="late-")
    write_usage(data, "2026/11/late-c09.jsonl", [LATE_C09])
    daily(data, 11, 11, snaps)
    # a catch-up of two days killed after its first (billed, statements not refreshed)
    for n in (12, 13):
        deliver(data, SC, since=SC.day(n), through=SC.day(n), part="first", days_per_file=1)
    with pytest.raises(RuntimeError, match="injected failure"):
        bill(data, SC.day(13), after_stage=fail_at("deduct", 2))
    bill(data, SC.day(13))
    snap()
    # a rebill from a mid-December day, then the last days
    bill(data, SC.day(13), rebill_from=SC.day(11))
    snap()
    daily(data, 14, 16, snaps)
    return snaps


def test_statements_drafted_for_changed_customers_equal_statements_drafted_for_all(
    tmp_path, monkeypatch
):
    drafted: list[tuple[int, int]] = []
    run_sql = tasks.statements.run_sql

    def counting(con, name, params=None):
        run_sql(con, name, params)
        if name == "statement_customers":
            drafted.append(
                con.execute(
                    "select (select count(*) from statement_customers), "
                    "(select count(*) from customer_days where day = ?)",
                    [params["day"]],
                ).fetchall()[0]
            )

    summed_from: list[tuple[date, date]] = []
    first_day_summed = tasks.statements.first_day_summed

    def recording(con, month):
        summed_from.append((month, first_day_summed(con, month)))
        return summed_from[-1][1]

    pools_from: list[tuple[date, date]] = []
    pools_first_day = tasks.statements.pools_first_day

    def recording_pools(day, month, first):
        pools_from.append((month, pools_first_day(day, month, first)))
        return pools_from[-1][1]

    monkeypatch.setattr(tasks.statements, "run_sql", counting)
    monkeypatch.setattr(tasks.statements, "first_day_summed", recording)
    monkeypatch.setattr(tasks.statements, "pools_first_day", recording_pools)
    got = history(tmp_path / "changed")
    # the pools too: added to as they stood late in November, summed in young December
    assert any(first > month for month, first in pools_from), pools_from
    assert any(first == month and first.month == 12 for month, first in pools_from), pools_from
    # most refreshes summed only the days since the last one; some (a new month, late data,
    # the rebill) the whole month
    assert any(first > month for month, first in summed_from), summed_from
    assert any(first == month for month, first in summed_from), summed_from

    def every_customer(con, name, params=None):
        if name != "statement_customers":
            return run_sql(con, name, params)
        con.execute(
            "create or replace temp table statement_customers as "
            "select customer_key from customer_days where day = ?",
            [params["day"]],
        )

    monkeypatch.setattr(tasks.statements, "run_sql", every_customer)
    # and sums the whole month each time (not the days since the last refresh)
    monkeypatch.setattr(tasks.statements, "first_day_summed", lambda _con, month: month)
    want = history(tmp_path / "every")
    [(granted, used, expired, events)] = query(
        warehouse(tmp_path / "every"),
        "select granted, used, expired, events from customer_days "
        "where customer_id = 'c01' and day = ?",
        [SC.day(3)],
    )
    assert (granted, used, expired, events) == (0, 0, 0, 0)
    for have, expected in zip(got, want, strict=True):
        assert_same(have, expected)
    # quiet customers were left out of some refreshes, and every customer was drafted when
    # the month was new or its opening changed
    assert any(0 < n < total for n, total in drafted), drafted
    assert any(n == total for n, total in drafted), drafted
