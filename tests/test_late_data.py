"""Late data (billing-rules §3, §8): lines that arrive after their day was billed are billed
as if they had come on time, back to --max-late-days; older lines are rejected `too_late`."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import rows
from tests.ops_helpers import (
    assert_same,
    at,
    bill,
    billing_facts,
    deliver,
    query,
    scenario,
    warehouse,
    write_orders,
    write_usage,
)

SC = scenario(days=32, customers=8, events_per_day=10, seed=3)


SHANGHAI = ZoneInfo("Asia/Shanghai")


def delivered_and_billed(sc, **kw):
    """Build a data dir: the whole scenario delivered on time and billed in one run."""

    def build(data: Path) -> None:
        deliver(data, sc)
        bill(data, sc.last_day, **kw)

    return build


@pytest.fixture(scope="module")
def one_go(billed):
    """SC billed in one run, once per session: tests read it or copy it."""
    data = billed.path(f"{__name__}.one-go", delivered_and_billed(SC))
    return data, billing_facts(warehouse(data))


def test_half_the_usage_delivered_late_bills_the_same_as_one_go(one_go, tmp_path):
    _, expected = one_go
    deliver(tmp_path, SC, part="first")
    first = bill(tmp_path, SC.last_day).summary()
    assert first["days_billed"] == SC.days
    assert billing_facts(warehouse(tmp_path)) != expected
    files = deliver(tmp_path, SC, part="second", prefix="late-")
    late = bill(tmp_path, SC.last_day)
    s = late.summary()
    assert s["files_ingested"] == len(files) and s["events_rejected"] == 0
    assert s["days_billed"] == SC.days  # the earliest late line is on day 1
    assert_same(billing_facts(warehouse(tmp_path)), expected)
    reasons = query(
        warehouse(tmp_path),
        "select distinct reason from billing_runs where run_id = ?",
        [late.run_id],
    )
    assert reasons == [("late_data",)]


def test_late_lines_of_the_last_days_rebill_only_those_days(one_go, tmp_path):
    _, expected = one_go
    tail = SC.day(SC.days - 2)
    on_time = replace(SC, events={d: v[0::2] if d >= tail else v for d, v in SC.events.items()})
    deliver(tmp_path, on_time)  # the last three days with half their lines
    bill(tmp_path, SC.last_day)
    late = [line for d, v in SC.events.items() if d >= tail for line in v[1::2]]
    write_usage(tmp_path, "late/last-days.jsonl", late)
    report = bill(tmp_path, SC.last_day)
    assert [(d["day"], d["reason"]) for d in report.days] == [
        (SC.day(n), "late_data") for n in range(SC.days - 2, SC.days + 1)
    ]
    assert_same(billing_facts(warehouse(tmp_path)), expected)


def test_rebill_from_the_tenth_day_bills_the_same_as_one_go(one_go, tmp_path):
    data, expected = one_go
    shutil.copytree(data, tmp_path / "d")
    report = bill(tmp_path / "d", SC.last_day, rebill_from=SC.day(10))
    assert [d["reason"] for d in report.days] == ["rebill"] * (SC.days - 9)
    assert report.days[0]["day"] == SC.day(10)
    assert_same(billing_facts(warehouse(tmp_path / "d")), expected)


def test_late_usage_then_a_rebill_from_the_tenth_day_bills_the_same_as_one_go(one_go, tmp_path):
    _, expected = one_go
    deliver(tmp_path, SC, part="first")
    bill(tmp_path, SC.day(20))
    deliver(tmp_path, SC, part="second", prefix="late-")  # late lines and days 21.. on time
    report = bill(tmp_path, SC.last_day, rebill_from=SC.day(10))
    reasons = {d["day"]: d["reason"] for d in report.days}
    assert reasons[SC.day(1)] == "late_data" and reasons[SC.day(9)] == "late_data"
    assert reasons[SC.day(10)] == "rebill" and reasons[SC.day(20)] == "rebill"
    assert reasons[SC.day(21)] == "new" and reasons[SC.last_day] == "new"
    assert_same(billing_facts(warehouse(tmp_path)), expected)


def test_late_orders_grant_their_pools_from_their_purchase_day(one_go, tmp_path):
    """Package orders (which settle arrears) delivered after their days were billed."""
    _, expected = one_go
    on_time = [o for o in SC.orders if o["product"] != "package_100"]
    late = [o for o in SC.orders if o["product"] == "package_100"]
    assert late
    deliver(tmp_path, SC)
    write_orders(tmp_path, "orders.csv", on_time)
    bill(tmp_path, SC.last_day)
    write_orders(tmp_path, "late-orders.csv", late)
    report = bill(tmp_path, SC.last_day)
    first_purchase = date.fromisoformat(min(o["purchased_at"][:10] for o in late))
    # recomputed from the purchase day (or the day before it: a pool starting exactly at a
    # cutoff counts in that day's suspension list, §9), not from the scenario's first day
    assert first_purchase - timedelta(days=1) <= report.days[0]["day"] <= first_purchase
    assert {d["reason"] for d in report.days} == {"late_data"}
    assert_same(billing_facts(warehouse(tmp_path)), expected)


def _event(event_id: str, customer: str, when) -> str:
    return json.dumps(
        {
            "event_id": event_id,
            "customer_id": customer,
            "account_id": f"{customer}-a0",
            "function": "copy_generation",
            "quantity": 2,
            "status": "succeeded",
            "occurred_at": when.isoformat(),
        },
        separators=(",", ":"),
    )


SHORT = scenario(days=20, customers=4, events_per_day=6, bad_lines=False)


def short_billed_late_window_5(billed, to: Path) -> Path:
    """SHORT delivered on time and billed with a late window of 5 days (built once, copied)."""
    build = delivered_and_billed(SHORT, max_late_days=5)
    return billed.copy(f"{__name__}.short-late-5", build, to)


def test_lines_older_than_max_late_days_are_rejected_too_late_with_their_raw_text(billed, tmp_path):
    sc = SHORT
    tmp_path = short_billed_late_window_5(billed, tmp_path / "d")
    before = billing_facts(warehouse(tmp_path))
    rated = "select rated from customer_days where customer_id = 'c01' and day = ?"
    (rated_before,) = query(warehouse(tmp_path), rated, [sc.day(15)])
    # through day 20 and 5 late days: day 15 is the oldest day still open, day 14 is closed
    too_old = _event("late-14", "c01", at(sc.day(14), 23, 59, 59))
    in_time = _event("late-15", "c01", at(sc.day(15), 0, 0, 0))
    write_usage(tmp_path, "late/a.jsonl", [too_old, in_time])
    old_order = "o-late,c02,package_100,,100," + at(sc.day(14), 12).isoformat()
    (tmp_path / "inbox" / "orders" / "late.csv").write_text(
        "order_id,customer_id,product,term_months,amount_cny,purchased_at\n" + old_order + "\n"
    )
    report = bill(tmp_path, sc.last_day, max_late_days=5)
    assert [(d["day"], d["reason"]) for d in report.days] == [
        (sc.day(i), "late_data") for i in range(15, 21)
    ]
    db = warehouse(tmp_path)
    assert query(db, "select raw, reason from rejected_events where reason = 'too_late'") == [
        (too_old, "too_late")
    ]
    assert query(db, "select raw, reason from rejected_orders where reason = 'too_late'") == [
        (old_order, "too_late")
    ]
    assert query(db, "select event_id, day from rated_events where event_id like 'late-%'") == [
        ("late-15", sc.day(15))
    ]
    after = billing_facts(warehouse(tmp_path))
    # days before the cutoff are untouched; c01's day 15 has the late line's 2 credits more
    assert [r for r in after["customer_days"] if r[1] < sc.day(15)] == [
        r for r in before["customer_days"] if r[1] < sc.day(15)
    ]
    assert query(db, rated, [sc.day(15)]) == [(rated_before[0] + 2,)]


def test_events_and_orders_redelivered_after_the_late_window_are_duplicates_not_too_late(
    billed, tmp_path
):
    sc = SHORT
    tmp_path = short_billed_late_window_5(billed, tmp_path / "d")
    # the same billed events and orders again, in new files (other order, other content)
    write_usage(tmp_path, "resent/day2.jsonl", sc.events[sc.day(2)][::-1])
    write_orders(tmp_path, "resent.csv", sc.orders[::-1])
    report = bill(tmp_path, sc.last_day, max_late_days=5).summary()
    assert report["duplicates"] == len(sc.events[sc.day(2)])
    assert report["order_duplicates"] == len(sc.orders)
    assert report["rejected_by_reason"] == {}


def test_a_final_statement_changed_by_late_data_gets_a_new_revision(one_go, tmp_path):
    data, _ = one_go
    d = tmp_path / "d"
    shutil.copytree(data, d)
    november = SC.start.replace(day=1)
    revisions = "select customer_id, revision, status from statements where month = ? order by all"
    first = query(warehouse(d), revisions, [november])
    assert first and {(r[1], r[2]) for r in first} == {(1, "final")}
    old = "select * exclude (updated_at) from statements where month = ? order by all"
    before = query(warehouse(d), old, [november])
    write_usage(d, "late/november.jsonl", [_event("late-nov", "c02", at(SC.day(20), 12))])
    bill(d, SC.last_day)
    after = query(warehouse(d), revisions, [november])
    assert ("c02", 2, "final") in after  # the changed statement has a new revision
    assert [r for r in after if r[0] != "c02"] == [r for r in first if r[0] != "c02"]
    kept = query(warehouse(d), old.replace("order by", "and revision = 1 order by"), [november])
    assert kept == before  # earlier revisions are kept as they were


def test_a_pool_a_late_order_queues_later_shows_its_full_credits_as_remaining(inbox, monkeypatch):
    """An order delivered late that comes before a billed subscription in its queue moves
    that subscription's period later: it was drawn from, now nothing is drawn from it yet,
    and every pool keeps credits = used + expired + remaining (§5) in the published pools."""
    monkeypatch.setenv("ADBILL_TODAY", "2026-12-01")
    inbox.orders(["oB,c1,basic,1,30,2026-11-10T10:00:00+08:00"])
    inbox.usage(
        [_event(f"e{d}", "c1", datetime(2026, 11, d, 12, tzinfo=SHANGHAI)) for d in range(10, 30)]
    )
    inbox.bill("2026-11-30")
    con = inbox.warehouse()
    assert rows(con, "select order_id, remaining from pools") == [("oB", 300 - 20 * 2)]
    con.close()
    monkeypatch.setenv("ADBILL_TODAY", "2026-12-02")
    inbox.orders(["oA,c1,basic,1,30,2026-11-05T10:00:00+08:00"])
    inbox.bill("2026-12-01")
    con = inbox.warehouse()
    # oA is the first month now (its 40 credits drawn); oB renews it and has not begun
    assert rows(con, "select order_id, remaining from pools order by order_id") == [
        ("oA", 300 - 20 * 2),
        ("oB", 300),
    ]
    drawn = dict(
        rows(
            con,
            "select p.order_id, coalesce(sum(l.credits), 0) from pools as p "
            "left join ledger_entries as l on l.pool_key = p.pool_key and l.kind = 'use' "
            "group by 1",
        )
    )
    assert drawn == {"oA": 40, "oB": 0}
