"""A day's local midnight where a daylight-saving change skips or repeats it (billing-rules §1:
a billing day runs from one local midnight to the next, in the billing zone). Found by a rules
review: in America/Havana, America/Santiago and a few other zones the engine's SQL (DuckDB's
timezone()) and its Python (zoneinfo) took different instants for such a midnight, so a run
stopped (a renewal starting at a skipped midnight), broke its invariants (a renewal at a
repeated one) or charged arrears while a pool was still live."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from tasks.db import local_midnight
from tests.conftest import Inbox, event, order, rows

# zones whose midnight a DST change skips or repeats in these years, and a zone without DST
ZONES = [
    "America/Havana",
    "America/Santiago",
    "Africa/Cairo",
    "Asia/Beirut",
    "America/St_Johns",
    "Asia/Gaza",
    "Atlantic/Azores",
    "America/Asuncion",
    "Asia/Shanghai",
]


def sql_midnights(zones: list[str], first: str, last: str, sample: int):
    """(zone, day, the SQL macro's midnight, DuckDB's own timezone() of the day's 00:00, the
    day of the instant before the midnight, the midnight's day) of the days from `first`
    whose midnight is not the day's first instant, differs from DuckDB's plain timezone(),
    or is one day in `sample` (filtered in SQL: every zone's every day is millions of rows)."""
    from tasks.db import connect

    con = connect()
    try:
        return con.execute(
            "with d as (select tz, range::date as d from unnest($zones) as z(tz), "
            "range($first::date, $last::date, interval 1 day)), "
            "m as (select tz, d, local_midnight(tz, d) as m, timezone(tz, d::timestamp) as plain "
            "from d), "
            "c as (select *, timezone(tz, m - interval 1 microsecond)::date as before_day, "
            "timezone(tz, m)::date as at_day from m) "
            "select * from c "
            "where not (before_day < d and at_day = d) or m <> plain or hash(tz, d) % $sample = 0",
            {"zones": zones, "first": first, "last": last, "sample": sample},
        ).fetchall()
    finally:
        con.close()


def check_midnights(
    zones: list[str], first: str, last: str, sample: int = 97, skipped=frozenset()
) -> int:
    """Every day's midnight is the first instant dated on that day (the instant before it is
    dated earlier), in SQL and in Python alike (Python on the days it differs from DuckDB's
    plain timezone(), and one day in `sample`); how many days it differs on."""
    moved = 0
    for tz, day, m, plain, before, at in sql_midnights(zones, first, last, sample):
        if (tz, day) in skipped:
            continue
        assert before < day and at == day, (tz, day, m, before, at)
        assert local_midnight(day, tz) == m, (tz, day, m)
        moved += m != plain
    return moved


def test_a_midnight_is_the_days_first_instant_in_sql_and_python_alike():
    assert check_midnights(ZONES, "2020-01-01", "2036-01-01") > 20


@pytest.mark.slow
def test_every_zones_midnights_from_2010_to_2040():
    """Every zone Python and DuckDB both know, every day of 2010-2039 (~10 s), but the day
    Samoa and Tokelau skipped whole (2011-12-30: no instant is dated on it)."""
    from zoneinfo import available_timezones

    from tasks.db import connect

    con = connect()
    known = {r[0] for r in con.execute("select name from pg_timezone_names()").fetchall()}
    con.close()
    skipped = {("Pacific/Apia", date(2011, 12, 30)), ("Pacific/Fakaofo", date(2011, 12, 30))}
    zones = sorted(available_timezones() & known)
    assert check_midnights(zones, "2010-01-01", "2040-01-01", 9973, skipped) > 100


def zone_inbox(tmp_path, tz: str, today: str, monkeypatch) -> Inbox:
    monkeypatch.setenv("ADBILL_TODAY", today)
    return Inbox(tmp_path / "data", settings_overrides={"billing_tz": tz})


def test_a_renewal_starting_at_a_skipped_midnight_is_billed(tmp_path, monkeypatch):
    """America/Santiago skips 2027-09-05 00:00 (00:00 -04 is 01:00 -03): a Basic term ending
    there and its renewal, queued to start then, stopped the run (Polars refused the local
    time); the renewal now starts at 04:00Z, when the old term expires, and the day's usage
    after it draws on it."""
    inbox = zone_inbox(tmp_path, "America/Santiago", "2027-09-10", monkeypatch)
    inbox.orders(
        [
            order("o1", "s1", "basic", 1, "30", "2027-08-06T10:00:00-04:00"),
            order("o2", "s1", "basic", 1, "30", "2027-08-20T10:00:00-04:00"),
        ]
    )
    inbox.usage([event("e1", "s1", "copy_generation", 1, "2027-09-05T01:30:00-03:00")])
    inbox.bill("2027-09-08")
    wh = inbox.warehouse()
    wh.execute("set TimeZone = 'UTC'")
    at = datetime(2027, 9, 5, 4, tzinfo=UTC)
    assert rows(wh, "select pool_id, available_from, expires_at from pools order by 1") == [
        ("o1#0", datetime(2027, 8, 6, 14, tzinfo=UTC), at),
        ("o2#0", at, datetime(2027, 10, 5, 3, tzinfo=UTC)),
    ]
    assert rows(wh, "select kind, pool_id, day from ledger where event_id = 'e1'") == [
        ("use", "o2#0", date(2027, 9, 5))
    ]


@pytest.mark.parametrize("renewed", [False, True])
def test_a_repeated_midnight_ends_the_day_at_its_first(tmp_path, monkeypatch, renewed):
    """America/Havana repeats 2027-11-07 00:00 (at 05:00Z, 01:00 -04 becomes 00:00 -05): an
    event at 04:30Z is dated 11-07, after the first midnight (04:00Z). The term ending at
    24:00 on 11-06 ends there too: without a renewal the event is arrears (it was drawn from
    a pool its own day had expired), with one it draws on the renewal (the two had
    overlapped by an hour, and the run stopped on its invariants)."""
    inbox = zone_inbox(tmp_path, "America/Havana", "2027-11-10", monkeypatch)
    orders = [order("o1", "h1", "basic", 1, "30", "2027-10-08T10:00:00-04:00")]
    if renewed:
        orders.append(order("o2", "h1", "basic", 1, "30", "2027-10-20T10:00:00-04:00"))
    inbox.orders(orders)
    inbox.usage([event("e1", "h1", "copy_generation", 1, "2027-11-07T04:30:00Z")])
    inbox.bill("2027-11-08")
    wh = inbox.warehouse()
    first = datetime(2027, 11, 7, 4, tzinfo=UTC)
    assert rows(wh, "select expires_at, expiry_day from pools where pool_id = 'o1#0'") == [
        (first, date(2027, 11, 6))
    ]
    assert rows(wh, "select day from rated_events") == [(date(2027, 11, 7),)]
    drawn = rows(wh, "select kind, pool_id from ledger where event_id = 'e1'")
    assert drawn == ([("use", "o2#0")] if renewed else [("arrears", None)])
    if renewed:
        assert rows(wh, "select available_from from pools where pool_id = 'o2#0'") == [(first,)]
