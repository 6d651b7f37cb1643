"""Billing-rules §10: every worked example, billed end to end through the real pipeline."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import event, one, order, rows

SH = ZoneInfo("Asia/Shanghai")

# December and 2028 days: billed as if they were past (ingest takes later lines as in_future)
pytestmark = pytest.mark.usefixtures("today_after_the_examples")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(SH)


def example_a(inbox):
    inbox.orders([order("o1", "c1", "basic", 1, "30", "2026-11-26T10:00:00+08:00")])
    inbox.usage(
        [
            event("e1", "c1", "copy_generation", 3, "2026-11-26T11:00:00+08:00"),
            event("e2", "c1", "image_to_video", 5, "2026-11-26T11:10:00+08:00"),
            event("e3", "c1", "digital_human_spokesperson", 12.5, "2026-11-26T11:20:00+08:00"),
            event("e4", "c1", "video_translation", 25, "2026-11-26T11:30:00+08:00"),
        ]
    )


def test_example_a_basic_month_uses_49_credits_and_251_expire_as_25_10_breakage(inbox):
    example_a(inbox)
    inbox.bill("2026-12-26")
    con = inbox.warehouse()
    pool = one(con, "select credits, amount_cny, available_from, expires_at, remaining from pools")
    assert pool == (
        300,
        Decimal("30.00"),
        at("2026-11-26T10:00:00+08:00"),
        at("2026-12-26T00:00:00+08:00"),
        0,
    )
    assert rows(con, "select event_id, credits from rated_events order by event_id") == [
        ("e1", 3),
        ("e2", 30),
        ("e3", 13),
        ("e4", 3),
    ]
    day1 = one(con, "select used, balance, revenue_cny from customer_days where day = '2026-11-26'")
    assert day1 == (49, 251, Decimal("4.90"))
    expiry = one(
        con,
        "select expired, balance, breakage_cny, revenue_cny from customer_days "
        "where day = '2026-12-25'",
    )
    assert expiry == (251, 0, Decimal("25.10"), Decimal("0.00"))
    assert one(con, "select posted_at, credits from ledger where kind = 'expire'") == (
        at("2026-12-26T00:00:00+08:00"),
        251,
    )
    money = one(
        con, "select sum(revenue_cny), sum(breakage_cny), sum(payments_cny) from customer_days"
    )
    assert money == (Decimal("4.90"), Decimal("25.10"), Decimal("30.00"))


def test_example_b_event_takes_subscription_credits_before_package(inbox):
    example_a(inbox)
    inbox.orders([order("o2", "c1", "package_100", None, "100", "2026-11-26T10:05:00+08:00")])
    inbox.usage([event("e5", "c1", "custom_avatar", 8, "2026-11-26T12:00:00+08:00")])
    inbox.bill("2026-11-26")
    con = inbox.warehouse()
    draws = rows(con, "select pool_id, credits from ledger where event_id = 'e5' order by entry_id")
    assert draws == [("o1#0", 251), ("o2#0", 149)]
    assert one(con, "select balance, arrears_outstanding from customer_days") == (901, 0)


def test_example_c_same_expiry_draws_the_earlier_start_first(inbox):
    inbox.orders(
        [
            order("o9", "c1", "basic", 1, "30", "2026-11-26T09:00:00+08:00"),
            order("o1", "c1", "professional", 1, "118", "2026-11-26T11:00:00+08:00"),
        ]
    )
    inbox.usage([event("e1", "c1", "copy_generation", 1, "2026-11-26T12:00:00+08:00")])
    inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert rows(con, "select distinct expires_at from pools") == [
        (at("2026-12-26T00:00:00+08:00"),)
    ]
    assert rows(con, "select pool_id, credits from ledger where kind = 'use'") == [("o9#0", 1)]


def test_example_d_arrears_suspend_and_a_package_settles_them_next_morning(inbox):
    inbox.orders([order("o1", "c1", "basic", 1, "30", "2026-11-26T09:00:00+08:00")])
    inbox.usage(
        [
            event("e1", "c1", "custom_avatar", 5, "2026-11-26T10:00:00+08:00"),  # 250
            event("e2", "c1", "custom_avatar", 2, "2026-11-26T11:00:00+08:00"),  # 100
        ]
    )
    inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert one(
        con, "select used, arrears_opened, arrears_outstanding, balance from customer_days"
    ) == (300, 50, 50, 0)
    assert rows(
        con, "select event_id, kind, credits from ledger where event_id = 'e2' order by entry_id"
    ) == [("e2", "use", 50), ("e2", "arrears", 50)]
    con.close()
    inbox.orders([order("o2", "c1", "package_100", None, "100", "2026-11-27T08:00:00+08:00")])
    inbox.bill("2026-11-27")
    con = inbox.warehouse()
    settle = one(con, "select pool_id, posted_at, credits from ledger where kind = 'settle'")
    assert settle == ("o2#0", at("2026-11-27T08:00:00+08:00"), 50)
    assert one(
        con,
        "select settled, arrears_outstanding, balance from customer_days where day = '2026-11-27'",
    ) == (50, 0, 1000)


def test_example_e_professional_six_months_makes_six_30_day_pools(inbox):
    inbox.orders([order("o1", "c1", "professional", 6, "708", "2026-01-15T09:00:00+08:00")])
    inbox.bill("2026-01-15")
    con = inbox.warehouse()
    pools = rows(
        con,
        "select period_index, available_from, expires_at, credits, amount_cny "
        "from pools order by period_index",
    )
    starts = [
        "2026-01-15T09:00",
        "2026-02-14T00:00",
        "2026-03-16T00:00",
        "2026-04-15T00:00",
        "2026-05-15T00:00",
        "2026-06-14T00:00",
    ]
    assert [p[1] for p in pools] == [at(s + ":00+08:00") for s in starts]
    assert [p[2] for p in pools][-1] == at("2026-07-14T00:00:00+08:00")
    assert all(p[3] == 1250 and p[4] == Decimal("118.00") for p in pools)
    assert sum(p[4] for p in pools) == Decimal("708.00")


def test_example_f_same_edition_bought_while_active_is_a_queued_renewal(inbox):
    inbox.orders(
        [
            order("o1", "c1", "basic", 1, "30", "2026-11-26T10:00:00+08:00"),
            order("o2", "c1", "basic", 1, "30", "2026-12-20T15:00:00+08:00"),
        ]
    )
    inbox.bill("2026-12-27")
    con = inbox.warehouse()
    assert one(con, "select available_from, expires_at from pools where order_id = 'o2'") == (
        at("2026-12-26T00:00:00+08:00"),
        at("2027-01-25T00:00:00+08:00"),
    )
    assert one(con, "select granted from customer_days where day = '2026-12-26'") == 300


def test_example_g_enterprise_function_for_a_basic_customer_is_not_entitled(inbox):
    inbox.orders([order("o1", "c1", "basic", 1, "30", "2026-11-26T10:00:00+08:00")])
    inbox.usage([event("e1", "c1", "performance_report", 1, "2026-11-26T11:00:00+08:00")])
    inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert one(con, "select reason from rejected_events") == "not_entitled"
    assert one(con, "select count(*) from rated_events") == 0
    assert one(con, "select used from customer_days") == 0


def test_example_h_image_to_video_of_12_seconds_is_rejected(inbox):
    inbox.orders([order("o1", "c1", "basic", 1, "30", "2026-11-26T10:00:00+08:00")])
    inbox.usage(
        [
            event("e1", "c1", "image_to_video", 12, "2026-11-26T11:00:00+08:00"),
            event("e2", "c1", "image_to_video", 30, "2026-11-26T11:00:00+08:00"),
        ]
    )
    inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert one(con, "select reason from rejected_events") == "quantity_not_allowed"
    assert one(con, "select credits from rated_events where event_id = 'e2'") == 180


def test_example_i_package_bought_on_leap_day_expires_on_28_february(inbox):
    inbox.orders([order("o1", "c1", "package_100", None, "100", "2028-02-29T15:00:00+08:00")])
    inbox.bill("2028-02-29")
    con = inbox.warehouse()
    assert one(con, "select expires_at from pools") == at("2029-02-28T00:00:00+08:00")


def test_enterprise_function_costs_nothing_for_an_active_enterprise_customer(inbox):
    inbox.orders([order("o1", "c1", "enterprise", 1, "10000", "2026-11-26T10:00:00+08:00")])
    inbox.usage([event("e1", "c1", "performance_report", 1, "2026-11-26T11:00:00+08:00")])
    inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert one(con, "select credits from rated_events") == 0
    assert one(con, "select count(*) from rejected_events") == 0
