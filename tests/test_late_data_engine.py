"""Late data and reruns at the engine level: recompute from the earliest affected day."""

from __future__ import annotations

from tests.conftest import event, one, order, rows

BASIC = order("o1", "c1", "basic", 1, "30", "2026-11-01T10:00:00+08:00")


def test_a_late_event_rebills_its_day_and_every_later_day(inbox):
    inbox.orders([BASIC])
    inbox.usage([event("e2", "c1", "custom_avatar", 5, "2026-11-03T10:00:00+08:00")])
    inbox.bill("2026-11-05")
    inbox.usage([event("e1", "c1", "custom_avatar", 1, "2026-11-02T10:00:00+08:00")])
    report = inbox.bill("2026-11-05")
    assert [(d["day"].isoformat(), d["reason"]) for d in report.days] == [
        ("2026-11-02", "late_data"),
        ("2026-11-03", "late_data"),
        ("2026-11-04", "late_data"),
        ("2026-11-05", "late_data"),
    ]
    con = inbox.warehouse()
    assert rows(con, "select day::varchar, used, balance from customer_days order by day") == [
        ("2026-11-01", 0, 300),
        ("2026-11-02", 50, 250),
        ("2026-11-03", 250, 0),
        ("2026-11-04", 0, 0),
        ("2026-11-05", 0, 0),
    ]


def test_rebill_from_recomputes_billed_days_and_gives_the_same_figures(inbox):
    inbox.orders([BASIC])
    inbox.usage([event("e1", "c1", "custom_avatar", 7, "2026-11-03T10:00:00+08:00")])
    inbox.bill("2026-11-05")
    before = rows(inbox.warehouse(), "select * from customer_days order by day")
    report = inbox.bill("2026-11-05", rebill_from=__import__("datetime").date(2026, 11, 4))
    assert [(d["day"].isoformat(), d["reason"]) for d in report.days] == [
        ("2026-11-04", "rebill"),
        ("2026-11-05", "rebill"),
    ]
    assert rows(inbox.warehouse(), "select * from customer_days order by day") == before


def test_a_line_older_than_max_late_days_is_rejected_too_late(inbox):
    inbox.settings_overrides = {"max_late_days": 3}
    inbox.orders([BASIC])
    inbox.bill("2026-11-10")
    inbox.usage(
        [
            event("old", "c1", "copy_generation", 1, "2026-11-05T10:00:00+08:00"),
            event("ok", "c1", "copy_generation", 1, "2026-11-08T10:00:00+08:00"),
        ]
    )
    inbox.bill("2026-11-10")
    con = inbox.warehouse()
    assert one(con, "select line_no, reason from rejected_events") == (1, "too_late")
    assert one(con, "select event_id from rated_events") == "ok"


def test_a_late_order_of_an_earlier_day_is_billed_from_its_purchase_day(inbox):
    inbox.orders([BASIC])
    inbox.usage([event("e1", "c2", "copy_generation", 1, "2026-11-03T10:00:00+08:00")])
    inbox.bill("2026-11-04")  # c2 unknown yet: rejected
    inbox.orders([order("o2", "c2", "basic", 1, "30", "2026-11-02T10:00:00+08:00")])
    inbox.usage([event("e2", "c2", "copy_generation", 2, "2026-11-03T11:00:00+08:00")])
    inbox.bill("2026-11-04")
    con = inbox.warehouse()
    assert one(con, "select reason from rejected_events") == "unknown_customer"
    assert rows(
        con,
        "select day::varchar, granted, used, balance from customer_days "
        "where customer_id = 'c2' order by day",
    ) == [("2026-11-02", 300, 0, 300), ("2026-11-03", 0, 2, 298), ("2026-11-04", 0, 0, 298)]


def test_a_late_order_bought_at_midnight_rebills_the_day_before_whose_list_counts_it(inbox):
    inbox.orders([BASIC])
    inbox.usage([event("e1", "c1", "custom_avatar", 6, "2026-11-02T10:00:00+08:00")])  # 300
    inbox.bill("2026-11-03")
    con = inbox.warehouse()
    assert one(con, "select reason from suspensions where day = '2026-11-02'") == "no_credits"
    con.close()
    inbox.orders([order("o2", "c1", "package_100", None, "100", "2026-11-03T00:00:00+08:00")])
    report = inbox.bill("2026-11-03")
    assert report.days[0]["day"].isoformat() == "2026-11-02"
    con = inbox.warehouse()
    # §9: a pool starting exactly at the cutoff counts in full in that day's list
    assert one(con, "select count(*) from suspensions where day = '2026-11-02'") == 0
