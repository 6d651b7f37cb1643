"""Billing-rules §8: monthly statements, month-to-date then final, revisions, money to the fen."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from tests.conftest import Inbox, event, one, order, rows
from tests.helpers_issue3 import bill_with_lists, billed_example, example_a

NOV, DEC = date(2026, 11, 1), date(2026, 12, 1)
FIGURES = (
    "status, revision, through_day, opening_balance, granted, used, expired, arrears_opened, "
    "arrears_settled, arrears_outstanding, closing_balance, payments_cny, revenue_cny, "
    "breakage_cny, deferred_cny"
)

# December and 2028 days: billed as if they were past (ingest takes later lines as in_future)
pytestmark = pytest.mark.usefixtures("today_after_the_examples")


def statement(con, month: date, customer: str = "c1", revision: int | None = None) -> dict:
    names = [f.strip() for f in FIGURES.split(",")]
    rev = "revision = ?" if revision else "revision = (select max(revision) from statements "
    rev += "" if revision else "where customer_id = ? and month = ?)"
    params = [customer, month] + ([revision] if revision else [customer, month])
    row = one(
        con,
        f"select {FIGURES} from statements where customer_id = ? and month = ? and {rev}",
        params,
    )
    return dict(zip(names, row, strict=True))


@pytest.fixture(scope="module")
def example_a_billed(billed) -> Inbox:
    return billed_example(billed, example_a, "2026-12-31")


def test_example_a_november_statement_grants_300_uses_49_closes_251_defers_25_10(
    example_a_billed,
):
    con = example_a_billed.warehouse()
    nov = statement(con, NOV)
    assert nov == {
        "status": "final",
        "revision": 1,
        "through_day": date(2026, 11, 30),
        "opening_balance": 0,
        "granted": 300,
        "used": 49,
        "expired": 0,
        "arrears_opened": 0,
        "arrears_settled": 0,
        "arrears_outstanding": 0,
        "closing_balance": 251,
        "payments_cny": Decimal("30.00"),
        "revenue_cny": Decimal("4.90"),
        "breakage_cny": Decimal("0.00"),
        "deferred_cny": Decimal("25.10"),
    }
    lines = rows(
        con,
        "select function, events, quantity, credits from statement_lines "
        "where month = ? order by function",
        [NOV],
    )
    assert lines == [
        ("copy_generation", 1, Decimal("3"), 3),
        ("digital_human_spokesperson", 1, Decimal("12.5"), 13),
        ("image_to_video", 1, Decimal("5"), 30),
        ("video_translation", 1, Decimal("25"), 3),
    ]
    assert one(con, "select seats_entitled, seats_used from statements where month = ?", [NOV]) == (
        1,
        1,
    )


def test_example_a_december_statement_opens_251_expires_251_as_25_10_breakage_final(
    example_a_billed,
):
    con = example_a_billed.warehouse()
    dec = statement(con, DEC)
    assert dec["status"] == "final" and dec["revision"] == 1
    assert (dec["opening_balance"], dec["granted"], dec["used"], dec["expired"]) == (251, 0, 0, 251)
    assert dec["closing_balance"] == 0
    assert (dec["payments_cny"], dec["revenue_cny"], dec["breakage_cny"], dec["deferred_cny"]) == (
        Decimal("0.00"),
        Decimal("0.00"),
        Decimal("25.10"),
        Decimal("0.00"),
    )
    assert rows(con, "select * from statement_lines where month = ?", [DEC]) == []
    # the pool expired at 2026-12-26 00:00: no seat is entitled at the close of December
    assert one(con, "select seats_entitled from statements where month = ?", [DEC]) == 0


def test_statement_is_month_to_date_until_the_months_last_day_is_billed(tmp_path):
    inbox = Inbox(tmp_path / "data")
    example_a(inbox)
    bill_with_lists(inbox, "2026-11-28")
    con = inbox.warehouse()
    nov = statement(con, NOV)
    assert (nov["status"], nov["revision"], nov["through_day"]) == (
        "month_to_date",
        1,
        date(2026, 11, 28),
    )
    created = one(con, "select created_at from statements")
    con.close()
    bill_with_lists(inbox, "2026-11-30")
    con = inbox.warehouse()
    # refreshed in place: still one row, revision 1, now final
    assert one(con, "select count(*), max(revision), max(status) from statements") == (
        1,
        1,
        "final",
    )
    assert one(con, "select created_at from statements") == created
    assert statement(con, NOV)["through_day"] == date(2026, 11, 30)


def test_changed_final_statement_gets_a_new_revision_and_keeps_the_old_one(billed, tmp_path):
    inbox = billed_example(billed, example_a, "2026-11-30", to=tmp_path / "data")
    # late data: 10 more credits on 2026-11-28, delivered after November was final
    inbox.usage([event("late1", "c1", "copy_generation", 10, "2026-11-28T09:00:00+08:00")])
    bill_with_lists(inbox, "2026-11-30")
    con = inbox.warehouse()
    first, second = statement(con, NOV, revision=1), statement(con, NOV, revision=2)
    assert (first["status"], first["used"], first["closing_balance"]) == ("final", 49, 251)
    assert (second["status"], second["used"], second["closing_balance"]) == ("final", 59, 241)
    assert second["revenue_cny"] == Decimal("5.90") and second["deferred_cny"] == Decimal("24.10")
    lines = rows(
        con,
        "select revision, credits from statement_lines "
        "where function = 'copy_generation' order by revision",
    )
    assert lines == [(1, 3), (2, 13)]


def test_final_statement_billed_again_unchanged_keeps_its_only_revision(billed, tmp_path):
    inbox = billed_example(billed, example_a, "2026-11-30", to=tmp_path / "data")
    before = rows(inbox.warehouse(), "select revision, created_at, fingerprint from statements")
    bill_with_lists(inbox, "2026-11-30", rebill_from=date(2026, 11, 20))
    after = rows(inbox.warehouse(), "select revision, created_at, fingerprint from statements")
    assert before == after and len(after) == 1


def mixed_inbox(inbox: Inbox) -> None:
    """Editions side by side, a 6-month term, a renewal, packages, arrears, failed events."""
    inbox.orders(
        [
            order("p1", "m1", "professional", 6, "708", "2026-11-03T09:00:00+08:00"),
            order("p2", "m1", "basic", 1, "30", "2026-11-03T10:00:00+08:00"),
            order("p3", "m1", "package_100", None, "100", "2026-11-20T12:00:00+08:00"),
            order("b1", "m2", "basic", 1, "30", "2026-11-05T08:00:00+08:00"),
            order("b2", "m2", "basic", 1, "30", "2026-11-25T08:00:00+08:00"),  # renewal
            order("b3", "m3", "basic", 1, "30", "2026-11-10T20:00:00+08:00"),
            order("b4", "m3", "package_100", None, "100", "2026-12-03T07:30:00+08:00"),
        ]
    )
    events = []
    for i in range(40):
        day = 3 + i % 26
        events.append(
            event(
                f"m1-{i}",
                "m1",
                "image_to_video",
                30 if i % 7 == 0 else 5,
                f"2026-11-{day:02d}T{10 + i % 9:02d}:15:00+08:00",
                account_id=f"m1-a{i % 12}",
            )
        )
    for i in range(12):
        events.append(
            event(
                f"m2-{i}",
                "m2",
                "product_effects",
                7.5,
                f"2026-{11 + i // 8}-{5 + 2 * (i % 8):02d}T13:00:00+08:00",
                status="failed" if i == 3 else "succeeded",
            )
        )
    # m3 overdraws basic (300) on 2026-11-12, a package settles it on 2026-12-03
    events += [
        event("m3-1", "m3", "custom_avatar", 4, "2026-11-12T10:00:00+08:00", account_id="x"),
        event("m3-2", "m3", "custom_avatar", 3, "2026-11-12T11:00:00+08:00", account_id="y"),
        event("m3-3", "m3", "copy_generation", 9, "2026-12-04T11:00:00+08:00", account_id="z"),
    ]
    inbox.usage(events)


@pytest.fixture(scope="module")
def mixed_billed(billed) -> Inbox:
    return billed_example(billed, mixed_inbox, "2026-12-31")


def test_every_statement_recognised_plus_breakage_plus_deferred_equals_paid_to_the_fen(
    mixed_billed,
):
    con = mixed_billed.warehouse()
    assert one(con, "select count(*) from statements") == 6
    broken = rows(
        con,
        """
        select customer_id, month from statements
        where deferred_opening_cny + payments_cny
              <> revenue_cny + breakage_cny + deferred_cny
        """,
    )
    assert broken == []
    pools_broken = rows(
        con,
        "select pool_id from statement_pools "
        "where revenue_to_date_cny + breakage_cny + deferred_cny <> amount_cny",
    )
    assert pools_broken == []
    # the pools of a statement add up to its figures
    mismatched = rows(
        con,
        """
        with p as (
            select customer_key, month, revision, sum(deferred_cny) as deferred,
                   sum(revenue_cny) as revenue, sum(breakage_cny) as breakage,
                   sum(granted) as granted, sum(used) as used, sum(settled) as settled,
                   sum(expired) as expired, sum(remaining) as remaining
            from statement_pools group by all
        )
        select s.customer_id, s.month from statements as s join p using (customer_key, month,
            revision)
        where (p.deferred, p.revenue, p.breakage, p.granted, p.used, p.settled, p.expired,
               p.remaining)
              <> (s.deferred_cny, s.revenue_cny, s.breakage_cny, s.granted, s.used,
                  s.arrears_settled, s.expired, s.closing_balance)
        """,
    )
    assert mismatched == []
    # over the two months, everything paid is recognised, broken or still deferred
    totals = one(
        con,
        "select sum(payments_cny), sum(revenue_cny) + sum(breakage_cny) "
        "+ sum(deferred_cny) filter (where month = ?) from statements",
        [DEC],
    )
    assert totals[0] == totals[1] == Decimal("1028.00")


def test_closing_balance_is_opening_plus_granted_minus_used_settled_expired_and_opens_next_month(
    mixed_billed,
):
    con = mixed_billed.warehouse()
    assert (
        rows(
            con,
            "select customer_id, month from statements where closing_balance <> opening_balance "
            "+ granted - used - arrears_settled - expired or arrears_outstanding <> "
            "arrears_opening + arrears_opened - arrears_settled",
        )
        == []
    )
    carried = rows(
        con,
        """
        select n.customer_id, d.opening_balance = n.closing_balance,
               d.arrears_opening = n.arrears_outstanding,
               d.deferred_opening_cny = n.deferred_cny
        from statements as n join statements as d
            on d.customer_id = n.customer_id and d.month = n.month + interval 1 month
        order by 1
        """,
    )
    assert carried == [(c, True, True, True) for c in ("m1", "m2", "m3")]


def test_statement_lines_add_up_to_the_credits_rated_in_the_month(mixed_billed):
    con = mixed_billed.warehouse()
    got = rows(
        con,
        """
        select s.customer_id, s.month, s.rated, s.used + s.arrears_opened,
               (select sum(credits) from statement_lines as l
                where l.customer_key = s.customer_key and l.month = s.month
                  and l.revision = s.revision)
        from statements as s where s.rated > 0 order by 1, 2
        """,
    )
    assert got and all(r[2] == r[3] == r[4] for r in got)
    # failed events are listed apart and cost nothing
    assert one(
        con,
        "select events, failed_events, quantity, credits from statement_lines "
        "where customer_id = 'm2' and month = ?",
        [NOV],
    ) == (7, 1, Decimal("52.5"), 280)


def test_example_d_like_arrears_opened_in_november_are_settled_in_december(mixed_billed):
    con = mixed_billed.warehouse()
    nov = statement(con, NOV, "m3")
    dec = statement(con, DEC, "m3")
    assert (nov["used"], nov["arrears_opened"], nov["arrears_outstanding"]) == (300, 50, 50)
    assert nov["closing_balance"] == 0
    assert (dec["granted"], dec["arrears_settled"], dec["arrears_outstanding"]) == (1050, 50, 0)
    # 1050 - 50 settled - 9 used: the basic pool was empty (it expires at 2026-12-09 24:00)
    assert dec["closing_balance"] == 991 and dec["used"] == 9


def test_seats_entitled_are_highest_edition_plus_packages_against_accounts_used(mixed_billed):
    con = mixed_billed.warehouse()
    seats = rows(
        con,
        "select customer_id, month, seats_entitled, seats_used from statements order by 1, 2",
    )
    assert seats == [
        # professional (10) beside basic (1): the highest edition, plus package_100 (3)
        ("m1", NOV, 13, 12),
        ("m1", DEC, 13, 0),
        # basic renewed from 2026-12-05 00:00 to 2027-01-04 00:00: one seat at both closes
        ("m2", NOV, 1, 1),
        ("m2", DEC, 1, 1),
        # basic over at 2026-12-09 24:00; package_100 (3) still valid at the close of December
        ("m3", NOV, 1, 2),
        ("m3", DEC, 3, 1),
    ]


def test_usage_days_hold_each_billed_days_events_per_customer_and_function(mixed_billed):
    """Statements sum usage_days (a few rows a customer and day) and account_days (a row an
    account and month), not the month's events: both must say exactly what the events say."""
    con = mixed_billed.warehouse()
    from_events = rows(
        con,
        """
        select day, customer_key, function,
               count(*) filter (where status = 'succeeded'),
               count(*) filter (where status <> 'succeeded'),
               coalesce(sum(quantity) filter (where status = 'succeeded'), 0), sum(credits)
        from events where day in (select day from billed_days)
        group by all order by all
        """,
    )
    assert len(from_events) >= 40  # days x customers x functions with events
    assert rows(con, "select * from usage_days order by all") == from_events
    # an account on the first day of each month it had events
    assert rows(con, "select * from account_days order by all") == rows(
        con,
        "select min(day), customer_key, account_id from events "
        "where day in (select day from billed_days) "
        "group by date_trunc('month', day), customer_key, account_id order by all",
    )


def test_a_warehouse_from_before_usage_days_gets_them_once_from_its_events(mixed_billed, tmp_path):
    from tasks.db import connect

    inbox = Inbox(tmp_path / "data")
    mixed_inbox(inbox)
    inbox.bill("2026-11-20")
    con = connect(inbox.settings.state_db)
    kept = {t: rows(con, f"select * from {t} order by all") for t in ("usage_days", "account_days")}
    assert kept["usage_days"] and kept["account_days"]
    # as a warehouse made before them was: without the tables, and before schema_migrations
    con.execute("drop table usage_days")
    con.execute("drop table account_days")
    con.execute("drop table if exists schema_migrations")
    con.close()
    con = connect(inbox.settings.state_db)  # opening it again writes them from the events
    for table, before in kept.items():
        assert rows(con, f"select * from {table} order by all") == before
    con.close()
    # and the month goes on from them: December's statements as in a warehouse billed at once
    inbox.bill("2026-12-31")
    fresh = mixed_billed  # the same inbox billed through 2026-12-31 in one run
    query = (
        "select customer_id, month, revision, used, events, seats_used, fingerprint "
        "from statements order by all"
    )
    assert rows(inbox.warehouse(), query) == rows(fresh.warehouse(), query)
