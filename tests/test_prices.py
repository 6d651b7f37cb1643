"""Prices change (issue 14): catalog versions effective from an instant, re-rating and
re-billing by rule, and keys that no term length or pool count can overflow."""

from __future__ import annotations

import inspect
import re
from datetime import date, timedelta

import duckdb
import pytest

import tasks.pipeline
import tasks.plan
from tasks.catalog import CatalogError, load_catalog
from tasks.plan import _overlay as plan_overlay
from tasks.plan import plan_run
from tasks.rate import check_catalog
from tasks.settings import DEFAULT_CATALOG
from tests.conftest import event, one, order, rows

SEED = DEFAULT_CATALOG.read_text()


def catalog(tmp_path, extra: str = "", name: str = "catalog.toml", seed: str = SEED):
    """The seed's catalog with more entries (versions) appended, as a file."""
    path = tmp_path / name
    path.write_text(seed + "\n" + extra)
    return path


COPY_AT_2_FROM_NOV_15 = """
[[functions]]
code = "copy_generation"
effective_from = 2026-11-15T00:00:00+08:00
credits_per_unit = 2
"""


def look(inbox, query: str, params: list | None = None) -> list[tuple]:
    """Rows of a query on the published warehouse (closed again: a later run replaces it)."""
    con = inbox.warehouse()
    try:
        return rows(con, query, params)
    finally:
        con.close()


def look1(inbox, query: str, params: list | None = None):
    con = inbox.warehouse()
    try:
        return one(con, query, params)
    finally:
        con.close()


# ---------------------------------------------------------------- rating by version


def test_a_mid_month_price_change_rates_events_before_and_after_at_their_own_prices(
    inbox, tmp_path
):
    inbox.settings_overrides = {"catalog_path": catalog(tmp_path, COPY_AT_2_FROM_NOV_15)}
    inbox.orders([order("o1", "c1", "package_100", None, "100", "2026-11-01T09:00:00+08:00")])
    inbox.usage(
        [
            event("before", "c1", "copy_generation", 3, "2026-11-14T23:59:59+08:00"),
            # the instant is in force from itself on, whatever the offset it is written with
            event("at", "c1", "copy_generation", 3, "2026-11-14T16:00:00Z"),
            event("after", "c1", "copy_generation", 3, "2026-11-20T10:00:00+08:00"),
            event("other", "c1", "digital_human_spokesperson", 3, "2026-11-20T10:00:00+08:00"),
        ]
    )
    inbox.bill("2026-11-30")
    rated = look(
        inbox,
        "select r.event_id, r.credits, v.effective_from is not null "
        "from rated_events as r join catalog_versions as v on v.version_id = r.catalog_version "
        "order by r.event_id",
    )
    assert rated == [("after", 6, True), ("at", 6, True), ("before", 3, False), ("other", 3, False)]
    assert look1(inbox, "select sum(used) from customer_days where day = '2026-11-14'") == 3
    assert look1(inbox, "select sum(used) from customer_days where day = '2026-11-15'") == 6
    assert look1(inbox, "select sum(used) from customer_days where day = '2026-11-20'") == 9
    assert (
        look1(inbox, "select credits from statement_lines where function = 'copy_generation'") == 15
    )
    # the versions are in the warehouse, the first in force until the second starts
    versions = look(
        inbox,
        "select effective_from, effective_until from catalog_versions "
        "where code = 'copy_generation' order by effective_from nulls first",
    )
    assert [(str(a), str(b)) for a, b in versions] == [
        ("None", "2026-11-15 00:00:00+08:00"),
        ("2026-11-15 00:00:00+08:00", "None"),
    ]


def test_an_order_is_checked_against_the_price_in_force_at_purchase_and_keeps_it(inbox, tmp_path):
    dearer = """
[[packages]]
code = "package_100"
effective_from = 2026-11-15
price_cny = "120"
credits = 1200
"""
    inbox.settings_overrides = {"catalog_path": catalog(tmp_path, dearer)}
    inbox.orders(
        [
            order("old", "c1", "package_100", None, "100", "2026-11-14T23:00:00+08:00"),
            order("stale", "c2", "package_100", None, "100", "2026-11-15T00:00:00+08:00"),
            order("new", "c2", "package_100", None, "120", "2026-11-15T00:00:00+08:00"),
        ]
    )
    inbox.bill("2026-11-20")
    assert look1(inbox, "select reason from rejected_orders") == "wrong_amount"
    pools = "select order_id, credits, amount_cny from pools order by order_id"
    assert look(inbox, pools) == [("new", 1200, 120), ("old", 1050, 100)]
    # the package's first version corrected afterwards: an accepted order keeps its price
    corrected = SEED.replace("credits = 1050", "credits = 1000")
    inbox.settings_overrides = {"catalog_path": catalog(tmp_path, dearer, "v2.toml", corrected)}
    report = inbox.bill("2026-11-20")
    assert report.days == []  # nothing billed changes
    inbox.orders([order("later", "c3", "package_100", None, "100", "2026-11-01T10:00:00+08:00")])
    inbox.bill("2026-11-20")
    assert look(inbox, pools) == [
        ("later", 1000, 100),
        ("new", 1200, 120),
        ("old", 1050, 100),
    ]


# ---------------------------------------------------------------- changes apply by rule


def _october_and_november(inbox):
    inbox.orders([order("o1", "c1", "package_10000", None, "10000", "2026-10-01T09:00:00+08:00")])
    inbox.usage(
        [
            event("e1", "c1", "copy_generation", 10, "2026-10-05T10:00:00+08:00"),
            event("e2", "c1", "copy_generation", 10, "2026-10-20T10:00:00+08:00"),
            event("e3", "c1", "copy_generation", 10, "2026-11-10T10:00:00+08:00"),
        ]
    )


def test_editing_a_past_version_rebills_from_its_day_with_statement_revisions(inbox, tmp_path):
    inbox.settings_overrides = {"catalog_path": catalog(tmp_path, COPY_AT_2_FROM_NOV_15)}
    _october_and_november(inbox)
    inbox.bill("2026-11-20")
    october = "select revision, used from statements where month = '2026-10-01' order by 1"
    assert look(inbox, october) == [(1, 20)]
    # the November change was meant for October 15th: the version is edited
    moved = COPY_AT_2_FROM_NOV_15.replace("2026-11-15", "2026-10-15")
    inbox.settings_overrides = {"catalog_path": catalog(tmp_path, moved, "moved.toml")}
    report = inbox.bill("2026-11-20")
    assert report.repriced_from.isoformat() == "2026-10-15"
    assert {d["reason"] for d in report.days} == {"price_change"}
    assert min(d["day"] for d in report.days).isoformat() == "2026-10-15"
    assert look(inbox, "select event_id, credits from rated_events order by 1") == [
        ("e1", 10),
        ("e2", 20),
        ("e3", 20),
    ]
    # October was final: it gets a new revision, the first is kept
    assert look(inbox, october) == [(1, 20), (2, 30)]
    assert look1(inbox, "select used from statements where month = '2026-11-01'") == 20
    assert look1(inbox, "select balance from customer_days where day = '2026-11-20'") == 110000 - 50
    # days before the change were not billed again
    assert (
        look1(
            inbox,
            "select count(*) from billing_runs "
            "where reason = 'price_change' and day < '2026-10-15'",
        )
        == 0
    )
    retired = "select count(*) from catalog_versions where retired_at is not null"
    assert look1(inbox, retired) == 1


def test_rebill_from_rates_again_from_the_current_catalog(inbox, tmp_path):
    _october_and_november(inbox)
    inbox.bill("2026-11-20")
    # credits frozen at some older price (as a working state before catalog versions had)
    con = duckdb.connect(str(inbox.settings.state_db))
    con.execute("update events set credits = 1 where event_id = 'e3'")
    con.close()
    report = inbox.bill("2026-11-20", rebill_from=date(2026, 11, 1))
    assert {d["reason"] for d in report.days} == {"rebill"}
    assert look1(inbox, "select credits from rated_events where event_id = 'e3'") == 10
    assert look1(inbox, "select used from statements where month = '2026-11-01'") == 10


def test_a_changed_price_and_a_rebill_show_the_new_credits(inbox, tmp_path):
    """The issue's case: credits_per_unit 1 -> 2 in the catalog, then --rebill-from."""
    _october_and_november(inbox)
    inbox.bill("2026-11-20")
    doubled = SEED.replace(
        'code = "copy_generation"\ncategory = "copywriting"\nunit = "request"\nunit_size = "1"\n'
        "credits_per_unit = 1",
        'code = "copy_generation"\ncategory = "copywriting"\nunit = "request"\nunit_size = "1"\n'
        "credits_per_unit = 2",
    )
    assert doubled != SEED
    inbox.settings_overrides = {"catalog_path": catalog(tmp_path, "", "doubled.toml", doubled)}
    report = inbox.bill("2026-11-20", rebill_from=date(2026, 11, 1))
    # the first version changed: every billed day is billed again, not only the rebill's
    assert min(d["day"] for d in report.days).isoformat() == "2026-10-01"
    assert look(inbox, "select credits from rated_events order by event_id") == [
        (20,),
        (20,),
        (20,),
    ]
    assert look(inbox, "select revision, used from statements order by month, revision") == [
        (1, 20),
        (2, 40),
        (1, 20),
    ]


def test_a_future_dated_version_changes_nothing_billed(inbox, tmp_path):
    _october_and_november(inbox)
    inbox.usage([event("e4", "c1", "copy_generation", 10, "2026-11-27T10:00:00+08:00")])
    inbox.bill("2026-11-20")
    before = look(inbox, "select * from customer_days order by day")
    later = COPY_AT_2_FROM_NOV_15.replace("2026-11-15", "2026-11-25")
    inbox.settings_overrides = {"catalog_path": catalog(tmp_path, later)}
    report = inbox.bill("2026-11-20")
    assert report.days == [] and report.repriced_from is None
    assert look(inbox, "select * from customer_days order by day") == before
    assert look1(inbox, "select count(*) from statements where revision > 1") == 0
    assert look1(inbox, "select count(*) from catalog_versions") == 19
    # the event already ingested for a later day is billed at the price in force then
    inbox.bill("2026-11-30")
    assert look1(inbox, "select credits from rated_events where event_id = 'e4'") == 20
    assert look1(inbox, "select used from customer_days where day = '2026-11-27'") == 20


# ---------------------------------------------------------------- keys


def test_24_and_36_month_terms_bill_with_a_pool_each_month(inbox, tmp_path):
    longer = """
[[editions]]
code = "basic"
effective_from = 2026-10-01
terms_months = [1, 6, 12, 24, 36]

[[editions]]
code = "professional"
effective_from = 2026-10-01
terms_months = [1, 6, 12, 24, 36]
"""
    inbox.settings_overrides = {"catalog_path": catalog(tmp_path, longer)}
    inbox.orders(
        [
            order("early", "c0", "basic", 24, "720", "2026-09-30T23:00:00+08:00"),
            order("b24", "c1", "basic", 24, "720", "2026-10-01T09:00:00+08:00"),
            order("b36", "c1", "basic", 36, "1080", "2026-10-02T09:00:00+08:00"),
            order("p36", "c2", "professional", 36, "4248", "2026-10-03T09:00:00+08:00"),
        ]
    )
    inbox.usage([event("e1", "c1", "copy_generation", 7, "2026-11-05T10:00:00+08:00")])
    inbox.bill("2026-11-30")
    # before the version the term was not on offer
    assert look1(inbox, "select reason from rejected_orders") == "bad_term"
    terms = look(
        inbox,
        "select order_id, count(*), count(distinct pool_id), max(period_index), "
        "max(expires_at)::date from pools group by order_id order by order_id",
    )
    assert [(o, n, d, k) for o, n, d, k, _ in terms] == [
        ("b24", 24, 24, 23),
        ("b36", 36, 36, 35),
        ("p36", 36, 36, 35),
    ]
    # the 36 months queue after the 24 (a renewal): 60 periods of 30 days from Oct 1st
    assert str(terms[1][4]) == "2031-09-05"
    assert look1(inbox, "select count(*) = count(distinct pool_key) from pools")
    assert (
        look1(
            inbox,
            "select balance from customer_days where customer_id = 'c1' and day = '2026-11-05'",
        )
        == 300 - 7
    )
    assert look1(inbox, "select sum(expired) from customer_days where customer_id = 'c2'") == 1250


def test_two_thousand_pools_on_one_customer_bill_correctly(inbox, tmp_path):
    short = SEED.replace("package_validity_months = 12", "package_validity_months = 1")
    inbox.settings_overrides = {"catalog_path": catalog(tmp_path, "", seed=short)}
    inbox.orders(
        [
            order(f"o{i:04d}", "big", "package_100", None, "100", "2026-10-20T09:00:00+08:00")
            for i in range(2000)
        ]
        + [order("small", "other", "package_100", None, "100", "2026-10-20T09:00:00+08:00")]
    )
    # 1,500 pools' worth in one event, then one more event: > 1,024 pools drawn in a day
    inbox.usage(
        [
            event(
                "big1",
                "big",
                "digital_human_spokesperson",
                1050 * 1500,
                "2026-10-20T10:00:00+08:00",
            ),
            event("big2", "big", "copy_generation", 5, "2026-10-20T11:00:00+08:00"),
            event("small1", "other", "copy_generation", 5, "2026-10-20T11:00:00+08:00"),
        ]
    )
    inbox.bill("2026-11-20")
    assert look1(inbox, "select count(*) from pools where customer_id = 'big'") == 2000
    assert look1(inbox, "select count(*) = count(distinct entry_id) from ledger")
    kinds = look(
        inbox,
        "select kind, count(*), sum(credits) from ledger where customer_id = 'big' "
        "group by kind order by kind",
    )
    assert kinds == [
        ("expire", 500, 1050 * 500 - 5),
        ("grant", 2000, 1050 * 2000),
        ("use", 1501, 1050 * 1500 + 5),
    ]
    # within the customer's day: grants, then draws in posting order
    assert look1(
        inbox,
        "select max(entry_id) filter (kind = 'grant') < min(entry_id) filter (kind = 'use') "
        "from ledger where customer_id = 'big' and day = '2026-10-20'",
    )
    big = "select used, expired, balance from customer_days where customer_id = 'big' and day = ?"
    assert look1(inbox, big, ["2026-10-20"]) == (1050 * 1500 + 5, 0, 1050 * 500 - 5)
    assert look1(inbox, big, ["2026-11-19"]) == (0, 1050 * 500 - 5, 0)
    assert look1(
        inbox,
        "select used, balance from customer_days where customer_id = 'other' and day = ?",
        ["2026-10-20"],
    ) == (5, 1045)


# ---------------------------------------------------------------- what the data dir billed with

PIPELINE_CHECKS_FIRST = "check_catalog" in inspect.getsource(tasks.pipeline)
PLAN_RATES_LIKE_THE_RUN = "rating_change_day" in inspect.getsource(tasks.plan)


def without(code: str, seed: str = SEED) -> str:
    """The seed's catalog without the entry of `code`."""
    dropped = re.sub(rf'\[\[\w+\]\]\ncode = "{code}"\n(?:[^\[\n][^\n]*\n|\n)*', "", seed, count=1)
    assert dropped != seed and f'"{code}"' not in dropped
    return dropped


def refused(inbox, through: str, match: str) -> str:
    with pytest.raises(CatalogError) as caught:
        inbox.bill(through)
    message = str(caught.value)
    assert match in message, message
    assert "\n" not in message and len(message) < 300, message
    return message


def _billed_november(inbox):
    inbox.orders(
        [
            order("o1", "c1", "package_100", None, "100", "2026-11-01T09:00:00+08:00"),
            order("o2", "c2", "basic", 1, "30", "2026-11-01T09:00:00+08:00"),
        ]
    )
    inbox.usage(
        [
            event("e1", "c1", "product_effects", 2, "2026-11-03T10:00:00+08:00"),
            event("e2", "c1", "product_effects", 2, "2026-11-05T10:00:00+08:00", status="failed"),
            event("e3", "c2", "copy_generation", 2, "2026-11-05T10:00:00+08:00"),
        ]
    )
    inbox.bill("2026-11-06")


def test_a_changed_period_or_validity_is_refused_once_the_data_dir_has_billed(inbox, tmp_path):
    _billed_november(inbox)
    before = look(inbox, "select * from pools order by pool_id")
    for name, was, now in (("period_days", 30, 31), ("package_validity_months", 12, 11)):
        changed = SEED.replace(f"{name} = {was}", f"{name} = {now}")
        inbox.settings_overrides = {"catalog_path": catalog(tmp_path, "", f"{name}.toml", changed)}
        inbox.orders([order(f"new-{name}", "c3", "basic", 1, "30", "2026-11-06T09:00:00+08:00")])
        refused(
            inbox,
            "2026-11-07",
            f"[settings] {name} is {now}, but this data dir billed with {name} = {was}: put "
            f"it back (another {name} needs a new data dir)",
        )
        assert look(inbox, "select * from pools order by pool_id") == before
        assert look1(inbox, "select max(day) from customer_days") == date(2026, 11, 6)
    # the settings it billed with: the run goes on, the orders held back are billed
    inbox.settings_overrides = {}
    inbox.bill("2026-11-07")
    assert look1(inbox, "select count(*) from pools where customer_id = 'c3'") == 2
    expiring = "select expires_at::date from pools where customer_id = 'c3' order by 1"
    assert look(inbox, expiring) == [(date(2026, 12, 6),), (date(2027, 1, 5),)]  # 30 days each


@pytest.mark.skipif(
    not PIPELINE_CHECKS_FIRST,
    reason="until tasks/pipeline.py calls tasks.rate.check_catalog before ingest",
)
def test_a_refused_catalog_reads_nothing_from_the_inbox(inbox, tmp_path):
    _billed_november(inbox)
    changed = SEED.replace("period_days = 30", "period_days = 31")
    inbox.settings_overrides = {"catalog_path": catalog(tmp_path, "", seed=changed)}
    inbox.orders([order("new", "c3", "basic", 1, "30", "2026-11-06T09:00:00+08:00")])
    refused(inbox, "2026-11-07", "period_days is 31")
    con = duckdb.connect(str(inbox.settings.state_db), read_only=True)
    try:
        assert one(con, "select count(*) from orders where order_id = 'new'") == 0
        assert one(
            con,
            "select status, error like 'CatalogError: %' from runs "
            "order by started_at desc limit 1",
        ) == ("failed", True)
    finally:
        con.close()


def test_a_new_data_dir_bills_with_the_settings_of_its_catalog(inbox, tmp_path):
    changed = SEED.replace("period_days = 30", "period_days = 31")
    inbox.settings_overrides = {"catalog_path": catalog(tmp_path, "", seed=changed)}
    inbox.orders([order("o1", "c1", "basic", 1, "30", "2026-11-01T09:00:00+08:00")])
    inbox.bill("2026-11-02")
    assert look1(inbox, "select expires_at::date from pools") == date(2026, 12, 2)
    assert look(inbox, "select name, value from catalog_settings order by name") == [
        ("package_validity_months", "12"),
        ("period_days", "31"),
    ]
    inbox.settings_overrides = {}  # now 30 again: refused
    refused(
        inbox, "2026-11-02", "period_days is 30, but this data dir billed with period_days = 31"
    )


def test_a_dropped_or_renamed_function_with_accepted_events_is_refused(inbox, tmp_path):
    _billed_november(inbox)
    renamed = SEED.replace('code = "product_effects"', 'code = "effects"')
    for name, text in (("dropped.toml", without("product_effects")), ("renamed.toml", renamed)):
        inbox.settings_overrides = {"catalog_path": catalog(tmp_path, "", name, text)}
        refused(
            inbox,
            "2026-11-06",
            "function product_effects has accepted events from 2026-11-03 to 2026-11-05 but is "
            "gone from the catalog: keep its versions (end a price with a new version; a new "
            "name is a new code)",
        )
    assert look(inbox, "select event_id, credits from rated_events order by 1") == [
        ("e1", 10),
        ("e2", 0),
        ("e3", 2),
    ]
    # a function that no event names may go, and re-bills nothing
    unused = without("game_character_image")
    inbox.settings_overrides = {"catalog_path": catalog(tmp_path, "", "unused.toml", unused)}
    report = inbox.bill("2026-11-06")
    assert report.repriced_from is None and report.days == []


def test_a_dropped_product_with_accepted_orders_is_refused(inbox, tmp_path):
    _billed_november(inbox)
    for code, month in (("package_100", "2026-11-01"), ("basic", "2026-11-01")):
        inbox.settings_overrides = {"catalog_path": catalog(tmp_path, "", seed=without(code))}
        kind = "package" if code.startswith("package") else "edition"
        refused(
            inbox,
            "2026-11-06",
            f"{kind} {code} has accepted orders from {month} to {month} but is gone from the "
            "catalog: keep its versions (change a price with a new version",
        )
    inbox.settings_overrides = {
        "catalog_path": catalog(tmp_path, "", seed=without("package_10000"))
    }
    assert inbox.bill("2026-11-06").days == []  # (editions and packages re-bill nothing)


def test_a_dropped_function_is_found_in_days_the_working_database_no_longer_holds(inbox, tmp_path):
    inbox.settings_overrides = {"hot_days": 3}
    inbox.orders([order("o1", "c1", "package_100", None, "100", "2026-10-01T09:00:00+08:00")])
    inbox.usage([event("e1", "c1", "product_effects", 2, "2026-10-03T10:00:00+08:00")])
    inbox.bill("2026-11-20")
    con = duckdb.connect(str(inbox.settings.state_db), read_only=True)
    assert one(con, "select count(*) from events") == 0  # October is in the day files only
    con.close()
    inbox.settings_overrides = {
        "hot_days": 3,
        "catalog_path": catalog(tmp_path, "", seed=without("product_effects")),
    }
    refused(
        inbox,
        "2026-11-20",
        "function product_effects has accepted events from 2026-10-01 to 2026-10-31",
    )


def test_a_new_function_re_bills_nothing(inbox, tmp_path):
    """No accepted event can name a code no catalog had: its versions alter no rating."""
    _billed_november(inbox)
    voice = '\n[[functions]]\ncode = "voice_clone"\ncredits_per_unit = 7\n'
    later = '\n[[functions]]\ncode = "voice_clone"\neffective_from = 2026-11-02\n'
    inbox.settings_overrides = {
        "catalog_path": catalog(tmp_path, voice + later + "credits_per_unit = 8\n")
    }
    if PLAN_RATES_LIKE_THE_RUN:
        assert plan_run(inbox.settings, date(2026, 11, 6)).days == []
    report = inbox.bill("2026-11-06")
    assert report.repriced_from is None and report.days == []
    # from now on it is known: its price changed in the past re-bills from that day
    inbox.settings_overrides = {
        "catalog_path": catalog(tmp_path, voice + later + "credits_per_unit = 9\n", "v2.toml")
    }
    report = inbox.bill("2026-11-06")
    assert report.repriced_from == date(2026, 11, 2)


def test_the_plan_refuses_what_the_run_refuses(inbox, tmp_path):
    """check_catalog on the plan's read-only view of the working state (tasks/plan.py)."""
    _billed_november(inbox)
    settings = inbox.settings
    for text, match in (
        (without("product_effects"), "function product_effects has accepted events"),
        (SEED.replace("period_days = 30", "period_days = 10"), "period_days is 10"),
    ):
        con = plan_overlay(settings.state_db)
        try:
            with pytest.raises(CatalogError, match=match):
                check_catalog(con, load_catalog(catalog(tmp_path, "", seed=text)))
            check_catalog(con, load_catalog(catalog(tmp_path, "", seed=SEED)))
        finally:
            con.close()


@pytest.mark.parametrize("cause", ["price_change", "rebill"])
def test_a_rerun_after_a_run_killed_once_it_unbilled_its_days_says_why_they_are_billed(
    inbox, tmp_path, cause
):
    """A price change's run commits its re-rating (the days unbilled) before it bills; a
    rebill's drops its days first: killed then, its rerun found nothing else to say and
    named the days late_data. The reason is kept until the days are billed again."""
    from tests.ops_helpers import fail_at

    _october_and_november(inbox)
    inbox.bill("2026-11-20")
    rebill = None
    if cause == "price_change":
        inbox.settings_overrides = {"catalog_path": catalog(tmp_path, COPY_AT_2_FROM_NOV_15)}
    else:
        rebill = date(2026, 11, 10)
    with pytest.raises(RuntimeError, match="injected failure"):
        inbox.bill("2026-11-20", rebill_from=rebill, after_stage=fail_at("deduct"))
    report = inbox.bill("2026-11-20")
    first = date(2026, 11, 15) if cause == "price_change" else rebill
    assert [(d["day"], d["reason"]) for d in report.days] == [
        (first + timedelta(days=n), cause) for n in range((date(2026, 11, 20) - first).days + 1)
    ]
    # billed again: the reason is not carried to later runs (late data is late data)
    inbox.usage([event("late", "c1", "copy_generation", 1, "2026-11-18T10:00:00+08:00")])
    later = inbox.bill("2026-11-20")
    assert {d["reason"] for d in later.days} == {"late_data"}


COPY_AT_10_FROM_NOV_12 = """
[[functions]]
code = "copy_generation"
effective_from = 2026-11-12T00:00:00+08:00
credits_per_unit = 10
"""


@pytest.mark.parametrize(
    ("right", "wrong"),
    [("", COPY_AT_10_FROM_NOV_12), (COPY_AT_2_FROM_NOV_15, "")],
    ids=["wrong-adds-a-version", "wrong-lacks-a-version"],
)
def test_a_run_stopped_after_ingest_with_a_wrong_catalog_leaves_no_price_of_it(
    inbox, tmp_path, right, wrong
):
    """An operator starts a run with the wrong catalog, stops it once its files are ingested
    (rated at ingest by that catalog), puts the right one back and runs again: every event
    is billed at the right catalog's price. The catalog is applied (recorded, the events it
    re-prices rated again) before any line is read, so the rerun sees the change."""
    from tests.ops_helpers import fail_at

    good = catalog(tmp_path, right, name="right.toml")
    bad = catalog(tmp_path, wrong, name="wrong.toml")
    inbox.settings_overrides = {"catalog_path": good}
    inbox.orders([order("o1", "c1", "package_100", None, "100", "2026-11-01T09:00:00+08:00")])
    inbox.usage([event("e0", "c1", "copy_generation", 1, "2026-11-02T10:00:00+08:00")])
    inbox.bill("2026-11-10")
    inbox.usage(
        [
            event("e1", "c1", "copy_generation", 3, "2026-11-13T10:00:00+08:00"),
            event("e2", "c1", "copy_generation", 3, "2026-11-16T10:00:00+08:00"),
        ],
        name="late.jsonl",
    )
    inbox.settings_overrides = {"catalog_path": bad}
    with pytest.raises(RuntimeError, match="injected failure"):
        inbox.bill("2026-11-20", after_stage=fail_at("ingest"))
    inbox.settings_overrides = {"catalog_path": good}
    inbox.bill("2026-11-20")
    per_unit = {"e0": 1, "e1": 1, "e2": 2 if right else 1}
    expected = [(e, 1 if e == "e0" else 3 * per_unit[e]) for e in ("e0", "e1", "e2")]
    assert look(inbox, "select event_id, credits from rated_events order by 1") == expected
    assert look1(inbox, "select sum(used) from customer_days") == sum(c for _, c in expected)
    # every event's version is one the right catalog has, in force at its instant
    versions = {v for (v,) in look(inbox, "select version_id from catalog_versions")}
    current = set(load_catalog(good, "Asia/Shanghai").versions()["version_id"])
    assert {v for (v,) in look(inbox, "select catalog_version from rated_events")} <= current
    assert current <= versions


def test_a_reverted_edit_keeps_one_row_per_catalog_version(inbox, tmp_path):
    """A catalog edited, the edit reverted, then made again: each version stays one row of
    catalog_versions (the audit's join on version_id counted a re-added version's events
    twice), retired or not as the file now has it, and the events bear the current price."""
    plain, edited = catalog(tmp_path, name="a.toml"), catalog(tmp_path, COPY_AT_2_FROM_NOV_15)
    inbox.orders([order("o1", "c1", "package_100", None, "100", "2026-11-01T09:00:00+08:00")])
    inbox.usage([event("e1", "c1", "copy_generation", 3, "2026-11-16T10:00:00+08:00")])
    for path, credits in [(plain, 3), (edited, 6), (plain, 3), (edited, 6)]:
        inbox.settings_overrides = {"catalog_path": path}
        inbox.bill("2026-11-20")
        assert look(inbox, "select credits from rated_events") == [(credits,)]
        joined = "select count(*), sum(r.credits) from rated_events as r join catalog_versions "
        assert look(inbox, joined + "as v on v.version_id = r.catalog_version") == [(1, credits)]
        assert (
            look1(inbox, "select count(*) - count(distinct version_id) from catalog_versions") == 0
        )
    retired = "select count(*) from catalog_versions where retired_at is not null"
    assert look1(inbox, retired) == 0  # (the last file has every version the first had)
    inbox.settings_overrides = {"catalog_path": plain}
    inbox.bill("2026-11-20")
    assert look1(inbox, retired) == 1  # the edit's version


def test_an_edited_first_version_reprices_from_the_first_billed_day(inbox, tmp_path):
    """A first version (in force from the beginning) edited re-bills every billed day: the
    run's summary names the first billed day, as the plan and status do (it said
    0001-01-01)."""
    _october_and_november(inbox)
    inbox.bill("2026-11-20")
    first = look1(inbox, "select min(day) from billing_runs")
    tripled = SEED.replace("credits_per_unit = 1", "credits_per_unit = 3", 1)
    inbox.settings_overrides = {"catalog_path": catalog(tmp_path, seed=tripled)}
    planned = tasks.plan.plan_run(inbox.settings, date(2026, 11, 20)).days
    assert (planned[0].day, planned[0].reason) == (first, "price_change")
    report = inbox.bill("2026-11-20")
    assert report.repriced_from == first
    assert report.summary()["repriced_from"] == first.isoformat()
    assert look1(inbox, "select sum(credits) from rated_events") == 90


def test_a_price_change_unbilling_every_day_keeps_the_late_window(inbox, tmp_path):
    """The catalog is applied before ingest: an edited first version unbilled every billed
    day, ingest then found none billed and took the 400-day history window for the 35-day
    late window — a line from August was accepted and 92 empty days billed. The window is
    the last day ever billed's."""
    _october_and_november(inbox)
    inbox.bill("2026-11-20")
    inbox.usage([event("old", "c1", "copy_generation", 1, "2026-08-01T10:00:00+08:00")])
    tripled = SEED.replace("credits_per_unit = 1", "credits_per_unit = 3", 1)
    inbox.settings_overrides = {"catalog_path": catalog(tmp_path, seed=tripled)}
    report = inbox.bill("2026-11-20")
    assert min(d["day"] for d in report.days) == date(2026, 10, 1)
    assert {d["reason"] for d in report.days} == {"price_change"}
    rejected = "select reason from rejected_events where raw like '%\"old\"%'"
    assert look(inbox, rejected) == [("too_late",)]
