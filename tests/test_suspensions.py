"""Billing-rules §9: the suspension list, its changes and the at-risk warnings at each cutoff."""

from __future__ import annotations

import csv
import tempfile
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.settings import DEFAULT_CATALOG
from tests.conftest import Inbox, event, one, order, rows
from tests.helpers_issue3 import bill_with_lists, example_d, out_file
from tests.reference import DEFAULT_CATALOG as REF_CATALOG
from tests.reference import Event, Order, reference_bill

SH = ZoneInfo("Asia/Shanghai")
D1, D2 = date(2026, 11, 26), date(2026, 11, 27)


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_example_d_arrears_suspend_at_the_cutoff_and_a_package_reinstates_next_day(inbox):
    example_d(inbox)
    bill_with_lists(inbox, D2)
    con = inbox.warehouse()
    assert rows(con, "select day, used, arrears_opened, settled from customer_days") == [
        (D1, 300, 50, 0),
        (D2, 0, 0, 50),
    ]
    assert rows(
        con,
        "select day, customer_id, reason, net_balance, arrears_outstanding, suspended_since "
        "from suspensions",
    ) == [(D1, "d1", "arrears", -50, 50, D1)]
    assert rows(con, "select day, customer_id, change from suspension_changes order by day") == [
        (D1, "d1", "suspended"),
        (D2, "d1", "reinstated"),
    ]
    assert rows(con, "select * from at_risk") == []
    day1 = read_csv(out_file(inbox, "suspensions", "2026-11-26.csv"))
    assert day1 == [
        {
            "customer_id": "d1",
            "status": "suspended",
            "reason": "arrears",
            "net_balance": "-50",
            "arrears_outstanding": "50",
            "suspended_since": "2026-11-26",
            "change": "suspended",
            "projected_exhaustion_date": "",
        }
    ]
    day2 = read_csv(out_file(inbox, "suspensions", "2026-11-27.csv"))
    assert [(r["customer_id"], r["status"], r["change"], r["net_balance"]) for r in day2] == [
        ("d1", "active", "reinstated", "1000")
    ]


def copy_requests(customer: str, days: range, credits: int, month: int = 11) -> list[dict]:
    """One copy_generation event of `credits` requests (= credits) at noon of each day."""
    return [
        event(
            f"{customer}-{d}",
            customer,
            "copy_generation",
            credits,
            f"2026-{month:02d}-{d:02d}T12:00:00+08:00",
        )
        for d in days
    ]


def test_at_risk_when_seven_times_net_is_below_three_times_the_weeks_rated_credits(inbox):
    inbox.orders([order("o1", "r1", "basic", 1, "30", "2026-11-01T00:30:00+08:00")])
    inbox.usage(copy_requests("r1", range(1, 9), 40))  # 40 credits a day, 300 in the pool
    bill_with_lists(inbox, "2026-11-08")
    con = inbox.warehouse()
    got = rows(
        con,
        "select day, net_balance, total_rated_7d, avg_daily_used, projected_exhaustion_date "
        "from at_risk order by day",
    )
    assert got == [
        # 11-05: net 100, total 200: 700 < 600 is false, so not yet at risk
        # 11-06: net 60, total 240: 420 < 720; 240 / 7 = 34.2857 -> 34.29; + floor(420/240) = 1
        (date(2026, 11, 6), 60, 240, Decimal("34.29"), date(2026, 11, 7)),
        # 11-07: net 20, total 280: + floor(140 / 280) = 0 days
        (date(2026, 11, 7), 20, 280, Decimal("40.00"), date(2026, 11, 7)),
    ]
    # 11-08: 20 drawn, 20 opened as arrears: suspended, not at risk
    assert one(con, "select day, reason, net_balance from suspensions") == (
        date(2026, 11, 8),
        "arrears",
        -20,
    )
    listed = read_csv(out_file(inbox, "suspensions", "2026-11-07.csv"))
    assert listed == [
        {
            "customer_id": "r1",
            "status": "at_risk",
            "reason": "",
            "net_balance": "20",
            "arrears_outstanding": "0",
            "suspended_since": "",
            "change": "",
            "projected_exhaustion_date": "2026-11-07",
        }
    ]


def test_at_risk_average_is_rounded_half_up_to_the_fen_and_the_week_is_seven_days(inbox):
    # 1000 credits on day 1: 1000 / 7 = 142.857 -> 142.86; day 8 drops day 1 from the week
    inbox.orders([order("o1", "r2", "package_100", None, "100", "2026-11-01T00:30:00+08:00")])
    inbox.usage(
        [event("big", "r2", "custom_avatar", 20, "2026-11-01T08:00:00+08:00")]  # 1000 credits
        + [event("small", "r2", "copy_generation", 1, "2026-11-02T08:00:00+08:00")]
        + [event("x", "r2", "copy_generation", 1, "2026-11-08T08:00:00+08:00")]
    )
    bill_with_lists(inbox, "2026-11-08")
    con = inbox.warehouse()
    got = rows(
        con,
        "select day, net_balance, total_rated_7d, avg_daily_used from at_risk order by day",
    )
    # net 50 after day 1: 350 < 3000; after day 2: 49 (343 < 3003) ... through day 7
    assert [g[0] for g in got] == [date(2026, 11, d) for d in range(1, 8)]
    assert got[0][1:] == (50, 1000, Decimal("142.86"))
    assert got[1][1:] == (49, 1001, Decimal("143.00"))
    # day 8: the week is 11-02 .. 11-08, total 2: 7 × 48 < 6 is false
    assert date(2026, 11, 8) not in [g[0] for g in got]


def test_suspended_since_runs_unbroken_and_a_pool_starting_at_the_cutoff_counts_in_full(inbox):
    inbox.orders(
        [
            order("o1", "s1", "basic", 1, "30", "2026-11-01T10:00:00+08:00"),
            # available exactly at the cutoff of 11-03: counts in full that evening
            order("o2", "s1", "package_100", None, "100", "2026-11-04T00:00:00+08:00"),
        ]
    )
    inbox.usage(copy_requests("s1", range(1, 2), 300))
    bill_with_lists(inbox, "2026-11-04")
    con = inbox.warehouse()
    assert rows(
        con, "select day, reason, net_balance, suspended_since from suspensions order by day"
    ) == [
        (date(2026, 11, 1), "no_credits", 0, date(2026, 11, 1)),
        (date(2026, 11, 2), "no_credits", 0, date(2026, 11, 1)),
    ]
    assert rows(con, "select day, change, net_balance from suspension_changes order by day") == [
        (date(2026, 11, 1), "suspended", 0),
        (date(2026, 11, 3), "reinstated", 1050),
    ]


def test_a_customer_suspended_then_quiet_for_weeks_is_listed_every_day(inbox):
    # net balances are figured only for customers whose standing can change (anything on
    # the day, usage in the week, on yesterday's list): a quiet suspended customer stays
    # listed, in arrears (a1) or out of credits (n1), long after its last usage left the week
    inbox.orders(
        [
            order("o1", "a1", "basic", 1, "30", "2026-11-01T10:00:00+08:00"),
            order("o2", "n1", "basic", 1, "30", "2026-11-01T10:00:00+08:00"),
            order("o3", "q1", "basic", 1, "30", "2026-11-01T10:00:00+08:00"),
        ]
    )
    inbox.usage(
        copy_requests("a1", range(1, 2), 350)
        + copy_requests("n1", range(1, 2), 300)
        + copy_requests("q1", range(1, 2), 10)
    )
    bill_with_lists(inbox, "2026-11-20")
    con = inbox.warehouse()
    days = [date(2026, 11, d) for d in range(1, 21)]
    listed = rows(
        con,
        "select customer_id, day, reason, net_balance, suspended_since from suspensions "
        "order by customer_id, day",
    )
    assert listed == [("a1", d, "arrears", -50, days[0]) for d in days] + [
        ("n1", d, "no_credits", 0, days[0]) for d in days
    ]
    assert rows(con, "select customer_id, day, change from suspension_changes order by 1") == [
        ("a1", days[0], "suspended"),
        ("n1", days[0], "suspended"),
    ]
    # q1 (290 credits left after 10 used) is never at risk, and never listed
    assert rows(con, "select distinct customer_id from at_risk") == []


def test_only_customers_with_an_order_purchased_before_the_cutoff_are_listed(inbox):
    inbox.orders(
        [
            order("o1", "k1", "basic", 1, "30", "2026-11-01T10:00:00+08:00"),
            order("o2", "k2", "basic", 1, "30", "2026-11-02T09:00:00+08:00"),
        ]
    )
    # k2 uses the service before buying: 10 credits of arrears at the cutoff of 11-01
    inbox.usage([event("k2-1", "k2", "copy_generation", 10, "2026-11-01T15:00:00+08:00")])
    bill_with_lists(inbox, "2026-11-02")
    con = inbox.warehouse()
    assert (
        one(
            con,
            "select arrears_outstanding from customer_days where customer_id = 'k2' and day = ?",
            [date(2026, 11, 1)],
        )
        == 10
    )
    assert rows(con, "select * from suspensions") == []
    assert rows(con, "select * from suspension_changes") == []


# ---------------------------------------------------------------- against the reference model

START = date(2026, 3, 1)
PERIOD_DAYS = 3  # short subscription periods: grants, expiries and lapses within a few days
PRICES = {
    "basic": (Decimal("30"), 300),
    "professional": (Decimal("118"), 1250),
    "package_100": (Decimal("100"), 1050),
}
instants = st.tuples(st.integers(0, 6), st.sampled_from([0, 1, 9 * 60 + 30, 12 * 60, 23 * 60 + 59]))
customers_st = st.lists(
    st.tuples(
        st.lists(
            st.tuples(st.sampled_from(list(PRICES)), st.sampled_from([1, 6]), instants),
            min_size=1,
            max_size=2,
        ),
        st.lists(st.tuples(st.integers(1, 400), instants), max_size=8),
    ),
    min_size=1,
    max_size=3,
)


def _instant(day_offset: int, minute: int) -> datetime:
    base = datetime.combine(START + timedelta(days=day_offset), datetime.min.time(), SH)
    return base + timedelta(minutes=minute)


def _scenario(spec) -> tuple[list[Order], list[Event]]:
    orders, events = [], []
    for c, (order_specs, event_specs) in enumerate(spec):
        for i, (product, term, (d, m)) in enumerate(order_specs):
            price, _ = PRICES[product]
            months = None if product.startswith("package") else term
            when = _instant(0 if c == 0 and i == 0 else d, m)
            orders.append(Order(f"o{c}{i}", f"c{c}", product, months, price * (months or 1), when))
        for j, (credits, (d, m)) in enumerate(event_specs):
            events.append(Event(f"e{c}-{j}", f"c{c}", credits, _instant(d, m)))
    return orders, events


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(customers_st, st.integers(3, 8))
def test_suspensions_and_at_risk_match_the_reference_model(spec, n_days):
    orders, events = _scenario(spec)
    last = START + timedelta(days=n_days - 1)
    # what has happened by the last cutoff (the reference leaves later purchases out)
    orders = [o for o in orders if o.purchased_at < _instant(n_days, 0)]
    ref = reference_bill(
        orders, events, START, last, catalog=REF_CATALOG | {"period_days": PERIOD_DAYS}
    )
    with tempfile.TemporaryDirectory() as tmp:
        inbox = Inbox(Path(tmp) / "data")
        catalog = Path(tmp) / "catalog.toml"
        catalog.write_text(
            DEFAULT_CATALOG.read_text().replace("period_days = 30", f"period_days = {PERIOD_DAYS}")
        )
        inbox.settings_overrides = {"catalog_path": catalog}
        inbox.deliver_reference(orders, events)
        bill_with_lists(inbox, last)
        con = inbox.warehouse()
        suspended = {
            (r[0], r[1]): dict(
                zip(
                    ("reason", "net_balance", "arrears_outstanding", "suspended_since"),
                    r[2:],
                    strict=True,
                )
            )
            for r in rows(
                con,
                "select day, customer_id, reason, net_balance, arrears_outstanding, "
                "suspended_since from suspensions",
            )
        }
        assert suspended == ref.suspensions
        changes = dict(
            ((d, c), ch)
            for d, c, ch in rows(con, "select day, customer_id, change from suspension_changes")
        )
        assert changes == ref.changes
        at_risk = {
            (r[0], r[1]): {
                "net_balance": r[2],
                "total_rated_7d": r[3],
                "projected_exhaustion_date": r[4],
            }
            for r in rows(
                con,
                "select day, customer_id, net_balance, total_rated_7d, "
                "projected_exhaustion_date from at_risk",
            )
        }
        assert at_risk == ref.at_risk
        con.close()
