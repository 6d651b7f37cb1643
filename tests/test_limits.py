"""Billing-rules §3 "Limits every input meets": each limit at and just past it, and the
hostile inputs that used to stop every customer's billing (issue 12)."""

from __future__ import annotations

import gzip
import json
import os
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from tasks import fast_lines
from tests.conftest import Inbox, event, one, order, rows

BASIC = order("o1", "c1", "basic", 1, "30", "2026-11-26T10:00:00+08:00")
T = "2026-11-26T11:00:00+08:00"
TODAY = "2026-11-27"  # ADBILL_TODAY of these tests: yesterday is the billed day 2026-11-26


def line(event_id: str, **changes) -> str:
    e = event(event_id, "c1", "copy_generation", 1, T)
    e.update(changes)
    return json.dumps(e, ensure_ascii=False)


def raw_quantity(event_id: str, quantity: str, function: str = "copy_generation") -> str:
    """A line whose quantity is written exactly as given (JSON number text)."""
    return line(event_id, function=function, quantity=0).replace(
        '"quantity": 0', f'"quantity": {quantity}'
    )


# (line, reason or None when accepted, credits when accepted)
LIMIT_LINES = {
    # quantity (§3): a JSON number > 0 and < 10^9, at most 6 decimal places as written
    "q_largest": (
        raw_quantity("q_largest", "999999999.999999", "digital_human_spokesperson"),
        None,
        1_000_000_000,
    ),
    "q_million": (raw_quantity("q_million", "1000000"), None, 1_000_000),
    "q_1e9": (raw_quantity("q_1e9", "1000000000"), "quantity_too_large", None),
    "q_1e300": (raw_quantity("q_1e300", "1e300"), "quantity_too_large", None),
    "q_1e400": (raw_quantity("q_1e400", "1e400"), "bad_quantity", None),
    "q_nan": (raw_quantity("q_nan", "NaN"), "bad_quantity", None),
    "q_inf": (raw_quantity("q_inf", "-Infinity"), "bad_quantity", None),
    # (DuckDB's JSON reader takes them in lower case too: the same reason)
    "q_nan_lower": (raw_quantity("q_nan_lower", "nan"), "bad_quantity", None),
    "q_inf_lower": (raw_quantity("q_inf_lower", "inf"), "bad_quantity", None),
    "q_long_one": (
        raw_quantity("q_long_one", "1.000000000000000000000000000001"),
        "quantity_too_precise",
        None,
    ),
    "q_two": (
        raw_quantity("q_two", "2.0000000000000000001", "video_translation"),
        "quantity_too_precise",
        None,
    ),
    "q_6_places": (raw_quantity("q_6_places", "0.000001", "video_translation"), None, 1),
    "q_7_places": (
        raw_quantity("q_7_places", "0.0000001", "video_translation"),
        "quantity_too_precise",
        None,
    ),
    "q_exp_ok": (raw_quantity("q_exp_ok", "1e-6", "video_translation"), None, 1),
    "q_exp_fine": (
        raw_quantity("q_exp_fine", "1e-7", "video_translation"),
        "quantity_too_precise",
        None,
    ),
    "q_exp_big": (raw_quantity("q_exp_big", "1.5e1", "digital_human_spokesperson"), None, 15),
    "q_trailing_zeros": (raw_quantity("q_trailing_zeros", "3.000000000"), None, 3),
    "q_zero": (raw_quantity("q_zero", "-0"), "quantity_not_positive", None),
    # as written, not as a double rounds it: just below 10^9 (the double is 10^9) and too
    # small for a double (it is 0) are > 0, < 10^9 and too precise; 10^9 written otherwise
    "q_just_below_1e9": (
        raw_quantity("q_just_below_1e9", "999999999.99999999"),
        "quantity_too_precise",
        None,
    ),
    "q_below_1e9_exp": (
        raw_quantity("q_below_1e9_exp", "0.9999999999999999999e9"),
        "quantity_too_precise",
        None,
    ),
    "q_1e9_exp": (raw_quantity("q_1e9_exp", "1e9"), "quantity_too_large", None),
    "q_1e9_and_more": (
        raw_quantity("q_1e9_and_more", "1000000000.0000001"),
        "quantity_too_large",
        None,
    ),
    "q_tiny": (raw_quantity("q_tiny", "1e-400"), "quantity_too_precise", None),
    "q_tiny_negative": (raw_quantity("q_tiny_negative", "-1e-400"), "quantity_not_positive", None),
    "q_zero_exp": (raw_quantity("q_zero_exp", "0.000e-400"), "quantity_not_positive", None),
    # exponents past 64 bits (they stopped every run) and mantissas past 38 digits (their
    # value came out NULL or 0: billed free), judged and billed on their digits
    "q_exp_min64": (
        raw_quantity("q_exp_min64", "1e-9223372036854775808"),
        "quantity_too_precise",
        None,
    ),
    "q_exp_min64_zero": (
        raw_quantity("q_exp_min64_zero", "0e-9223372036854775808"),
        "quantity_not_positive",
        None,
    ),
    "q_exp_20_digits": (
        raw_quantity("q_exp_20_digits", "1.5e-99999999999999999999"),
        "quantity_too_precise",
        None,
    ),
    "q_exp_huge": (  # a double cannot hold it: as 1e400
        raw_quantity("q_exp_huge", "1e+99999999999999999999"),
        "bad_quantity",
        None,
    ),
    "q_exp_at_1e6": (raw_quantity("q_exp_at_1e6", "1e-1000000"), "quantity_too_precise", None),
    # a mantissa of a million digits moved by a seven-digit exponent: exactly 1 (a clamp at
    # 10^7 misjudged it and stopped the run)
    "q_million_digit_one": (
        raw_quantity("q_million_digit_one", "0." + "0" * 1_000_000 + "1e1000001"),
        None,
        1,
    ),
    "q_exp_13_digits": (
        raw_quantity("q_exp_13_digits", "1e-1000000000000"),
        "quantity_too_precise",
        None,
    ),
    "q_long_fraction_exp": (
        raw_quantity("q_long_fraction_exp", "0." + "0" * 38 + "1e42", "digital_human_spokesperson"),
        None,
        1000,
    ),
    "q_long_mantissa_exp": (
        raw_quantity("q_long_mantissa_exp", "1" + "0" * 42 + "e-40", "digital_human_spokesperson"),
        None,
        100,
    ),
    "q_long_mantissa_fine": (
        raw_quantity("q_long_mantissa_fine", "1" + "0" * 41 + "1e-40"),
        "quantity_too_precise",
        None,
    ),
    "q_long_plain_zeros": (
        raw_quantity("q_long_plain_zeros", "12.5" + "0" * 60, "digital_human_spokesperson"),
        None,
        13,
    ),
    "q_exp_fraction": (
        raw_quantity("q_exp_fraction", "1234.56e-4", "video_translation"),
        None,
        1,
    ),
    # identifiers (§3): 1-200 characters, no control characters, any other character
    "i" * 200: (line("i" * 200), None, 1),
    "id_201": (line("i" * 201), "bad_id", None),
    "id_empty": (line(""), "bad_id", None),
    "id_ctrl": (line("id\u0001x"), "bad_id", None),
    "id_del": (line("id\u007fx"), "bad_id", None),
    "acct_newline": (line("acct_newline", account_id="a\nb"), "bad_id", None),
    "cust_long": (line("cust_long", customer_id="c" * 201), "bad_id", None),
    "Zoë": (line("Zoë", account_id="team/north"), None, 1),
    "=1+2": (line("=1+2", account_id="客户"), None, 1),
    # timestamps (§1, §3): an offset within ±14:00, a year from 2000 to 2099
    "ts_plus14": (line("ts_plus14", occurred_at="2026-11-26T23:00:00+14:00"), None, 1),
    "ts_minus14": (line("ts_minus14", occurred_at="2026-11-25T11:00:00-14:00"), None, 1),
    "ts_plus1401": (
        line("ts_plus1401", occurred_at="2026-11-26T23:00:00+14:01"),
        "bad_timestamp",
        None,
    ),
    "ts_99": (line("ts_99", occurred_at="2026-11-26T11:00:00+99:99"), "bad_timestamp", None),
    "ts_0860": (line("ts_0860", occurred_at="2026-11-26T11:00:00+08:60"), "bad_timestamp", None),
    "ts_9999": (line("ts_9999", occurred_at="9999-12-31T11:00:00+08:00"), "bad_timestamp", None),
    "ts_1999": (line("ts_1999", occurred_at="1999-12-31T23:59:59+08:00"), "bad_timestamp", None),
    # the offset's other forms at and past the limit, and the RFC 3339 lowercase z
    "ts_plus14_hours": (line("ts_plus14_hours", occurred_at="2026-11-26T23:00:00+14"), None, 1),
    "ts_minus1400": (line("ts_minus1400", occurred_at="2026-11-25T11:00:00-1400"), None, 1),
    "ts_plus15": (line("ts_plus15", occurred_at="2026-11-26T23:00:00+15"), "bad_timestamp", None),
    "ts_1360": (line("ts_1360", occurred_at="2026-11-26T11:00:00+13:60"), "bad_timestamp", None),
    "ts_z": (line("ts_z", occurred_at="2026-11-26T03:00:00z"), None, 1),
    # RFC 3339's lowercase separator, with either UTC letter; without an offset it is still
    # one without
    "ts_t": (line("ts_t", occurred_at="2026-11-26t11:00:00+08:00"), None, 1),
    "ts_tz": (line("ts_tz", occurred_at="2026-11-26t03:00:00z"), None, 1),
    "ts_t_no_offset": (
        line("ts_t_no_offset", occurred_at="2026-11-26t11:00:00"),
        "timestamp_without_offset",
        None,
    ),
    "ts_2100": (line("ts_2100", occurred_at="2100-01-01T11:00:00+08:00"), "bad_timestamp", None),
    # hostile lines (issue 12 review): two events run together, a decoy key before an
    # escaped one, an escaped key hiding a too precise quantity
    "run_together": (line("rt1") + line("rt2"), "malformed_json", None),
    "two_names": ('x "quantity" "quantity"', "malformed_json", None),
    "decoy": (
        line("decoy", function="digital_human_spokesperson", quantity=0).replace(
            '"quantity": 0', '"\\"quantity": 0.5, "quantit\\u0079": 1000.5'
        ),
        None,
        1001,
    ),
    "escaped_key": (
        line("escaped_key", function="video_translation", quantity=0).replace(
            '"quantity": 0', '"quantit\\u0079": 2.0000000000000000001'
        ),
        "quantity_too_precise",
        None,
    ),
    # the time window (§3): dated after today + 1 day is in_future
    "tomorrow": (line("tomorrow", occurred_at="2026-11-28T23:59:59+08:00"), None, 1),
    "in_future": (line("in_future", occurred_at="2026-11-29T00:00:00+08:00"), "in_future", None),
    "ts_2099": (line("ts_2099", occurred_at="2099-12-31T11:00:00+08:00"), "in_future", None),
}


@pytest.fixture(scope="module", params=["exact", "scanner"])
def limits_run(request, tmp_path_factory):
    """One inbox holding every limit's line beside good ones, billed once: its lines read
    by the exact path alone, and with the compiled scanner taking the plain ones
    (tasks/fast_lines.py, which a batch of this size does not use unless told)."""
    old = os.environ.get("ADBILL_TODAY")
    os.environ["ADBILL_TODAY"] = TODAY
    scan, scanned = fast_lines.scan_lines, []
    if request.param == "scanner":
        os.environ["ADBILL_SCAN_MIN_LINES"] = "1"

        def counted(rows):
            fast, rest = scan(rows)
            scanned.append(fast.num_rows)
            return fast, rest

        fast_lines.scan_lines = counted
    try:
        inbox = Inbox(tmp_path_factory.mktemp("limits") / "data")
        inbox.orders([BASIC, order("o2", "c2", "enterprise", 1, "10000", T)])
        lines = [line("good1")] + [raw for raw, _, _ in LIMIT_LINES.values()] + [line("good2")]
        path = inbox.usage(lines)
        with path.open("ab") as f:  # a line that is not UTF-8, then a good one
            f.write(
                b'{"event_id": "enc", "customer_id": "c1\xff"}\n' + line("good3").encode() + b"\n"
            )
        report = inbox.bill("2026-11-26")
        # (the good lines and the limits' lines of the plain form: the scanner took them)
        assert request.param == "exact" or sum(scanned) >= 10
        yield inbox, report, path
    finally:
        os.environ.pop("ADBILL_SCAN_MIN_LINES", None)
        fast_lines.scan_lines = scan
        if old is None:
            os.environ.pop("ADBILL_TODAY", None)
        else:
            os.environ["ADBILL_TODAY"] = old


@pytest.mark.parametrize("key", list(LIMIT_LINES), ids=[k[:20] for k in LIMIT_LINES])
def test_each_limit_of_section_3_accepts_at_it_and_rejects_past_it(limits_run, key):
    inbox, _, _ = limits_run
    raw, reason, credits = LIMIT_LINES[key]
    con = inbox.warehouse()
    rejected = rows(con, "select reason from rejected_events where raw = ?", [raw])
    accepted = rows(
        con, "select credits from events where line_no = ? + 1", [list(LIMIT_LINES).index(key) + 1]
    )
    if reason is None:
        assert rejected == [] and accepted == [(credits,)]
    else:
        assert rejected == [(reason,)] and accepted == []


def test_a_line_that_is_not_utf8_is_bad_encoding_with_its_bytes_shown_not_repaired(limits_run):
    inbox, _, _ = limits_run
    con = inbox.warehouse()
    raw, reason = one(con, "select raw, reason from rejected_events where raw like '%enc%'")
    assert reason == "bad_encoding"
    assert raw == '{"event_id": "enc", "customer_id": "c1\\xff"}' and "\ufffd" not in raw


def test_the_good_lines_beside_every_limit_are_billed_and_the_largest_quantity_fits(limits_run):
    inbox, report, _ = limits_run
    con = inbox.warehouse()
    billed = {r[0] for r in rows(con, "select event_id from rated_events where day = '2026-11-26'")}
    assert {"good1", "good2", "good3", "q_largest", "Zoë", "=1+2", "i" * 200} <= billed
    # 10^9 credits of arrears and a million-credit event: no DECIMAL overflow anywhere
    assert one(con, "select arrears_opened from customer_days where customer_id = 'c1'") > 10**9
    assert one(con, "select quantity from rated_events where event_id = 'q_largest'") == Decimal(
        "999999999.999999"
    )
    # the exact value, from the digits as written (not a decimal cast of 40 digits)
    got = dict(
        rows(
            con,
            "select event_id, quantity from rated_events where event_id in "
            "('q_long_fraction_exp', 'q_long_mantissa_exp', 'q_long_plain_zeros', "
            "'q_exp_fraction', 'q_exp_big')",
        )
    )
    assert got == {
        "q_long_fraction_exp": Decimal("1000"),
        "q_long_mantissa_exp": Decimal("100"),
        "q_long_plain_zeros": Decimal("12.5"),
        "q_exp_fraction": Decimal("0.123456"),
        "q_exp_big": Decimal("15"),
    }
    # no accepted event without its quantity and credits (free usage)
    assert one(con, "select count(*) from events where quantity is null or credits is null") == 0
    want = sum(1 for _, r, _ in LIMIT_LINES.values() if r is not None) + 1  # + bad_encoding
    assert report.ingest.events_rejected == want


# ---------------------------------------------------------------- the time window


def test_history_window_on_a_fresh_data_dir_rejects_too_late_just_past_it(inbox, monkeypatch):
    monkeypatch.setenv("ADBILL_TODAY", TODAY)
    inbox.settings_overrides = {"max_history_days": 3}  # through 11-26: from 11-23 on
    inbox.orders([BASIC, order("o0", "c0", "basic", 1, "30", "2026-11-22T23:59:59+08:00")])
    inbox.usage(
        [
            line("at", occurred_at="2026-11-23T00:00:00+08:00"),
            line("past", occurred_at="2026-11-22T23:59:59+08:00"),
            line("old", occurred_at="2001-01-01T00:00:00+08:00"),
        ]
    )
    report = inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert rows(con, "select event_id from rated_events") == [("at",)]
    assert rows(con, "select reason from rejected_events order by line_no") == [
        ("too_late",),
        ("too_late",),
    ]
    assert rows(con, "select reason from rejected_orders") == [("too_late",)]
    assert [d["day"] for d in report.days][0] == date(2026, 11, 23)


def test_an_order_too_late_does_not_make_a_later_copy_of_its_id_a_conflict(inbox, monkeypatch):
    """A copy too late is never accepted: the file's next copy of the order_id, within the
    window, is the first that can stand and is granted (it was `duplicate_conflict` against
    the one turned away, and the paid package was never granted); of two copies too late
    the second is still an exact duplicate (counted, not rejected)."""
    monkeypatch.setenv("ADBILL_TODAY", TODAY)
    inbox.settings_overrides = {"max_history_days": 3}  # through 11-26: from 11-23 on
    old = order("oX", "c1", "package_100", None, "100", "2026-11-20T10:00:00+08:00")
    inbox.orders(
        [
            BASIC,
            old,
            order("oX", "c1", "package_100", None, "100", "2026-11-24T10:00:00+08:00"),
            order("oY", "c1", "package_100", None, "100", "2026-11-21T10:00:00+08:00"),
            order("oY", "c1", "package_100", None, "100", "2026-11-21T10:00:00+08:00"),
        ]
    )
    inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert rows(con, "select line_no, reason from rejected_orders order by 1") == [
        (3, "too_late"),
        (5, "too_late"),
    ]
    assert one(con, "select duplicates from ingested_files where kind = 'orders'") == 1
    assert rows(con, "select purchased_at::date from orders where order_id = 'oX'") == [
        (date(2026, 11, 24),)
    ]


def test_an_old_line_on_a_billed_data_dir_is_too_late_and_bills_no_old_day(inbox, monkeypatch):
    monkeypatch.setenv("ADBILL_TODAY", TODAY)
    inbox.settings_overrides = {"max_late_days": 3}
    inbox.orders([BASIC])
    inbox.usage([line("e1")])
    inbox.bill("2026-11-26")
    inbox.usage(
        [
            line("edge", occurred_at="2026-11-23T00:00:00+08:00"),  # through - 3: accepted
            line("late", occurred_at="2026-11-22T23:59:59+08:00"),
            line("y2000", occurred_at="2000-01-01T10:00:00+08:00"),
            line("y1970", occurred_at="1970-01-01T10:00:00+08:00"),
        ]
    )
    report = inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert rows(con, "select reason from rejected_events order by line_no") == [
        ("too_late",),
        ("too_late",),
        ("bad_timestamp",),
    ]
    # only the days from the accepted late line on are billed again, none before 11-23
    assert [d["day"] for d in report.days] == [date(2026, 11, 23 + i) for i in range(4)]


# ---------------------------------------------------------------- duplicates


def test_same_event_id_other_content_days_apart_in_another_file_is_a_conflict(inbox, monkeypatch):
    monkeypatch.setenv("ADBILL_TODAY", "2026-12-10")
    inbox.orders([BASIC])
    inbox.usage([line("e1")])
    inbox.bill("2026-11-26")
    inbox.usage([line("e1", quantity=5, occurred_at="2026-11-29T11:00:00+08:00")])
    inbox.bill("2026-11-29")
    con = inbox.warehouse()
    assert rows(con, "select sum(credits) from rated_events where event_id = 'e1'") == [(1,)]
    assert rows(con, "select reason from rejected_events") == [("duplicate_conflict",)]


def test_duplicates_are_judged_within_the_late_window_plus_two_days_either_side(inbox, monkeypatch):
    monkeypatch.setenv("ADBILL_TODAY", "2026-12-10")
    inbox.settings_overrides = {"max_late_days": 3}  # the window: 5 days either side
    inbox.orders([order("o1", "c1", "basic", 1, "30", "2026-11-20T10:00:00+08:00")])
    inbox.usage(
        [
            line("near", occurred_at="2026-11-21T11:00:00+08:00"),
            line("far", occurred_at="2026-11-21T11:00:00+08:00"),
        ]
    )
    inbox.bill("2026-11-21")
    inbox.usage(
        [
            line("near", quantity=2, occurred_at="2026-11-26T11:00:00+08:00"),  # 5 days
            line("far", quantity=2, occurred_at="2026-11-27T11:00:00+08:00"),  # 6 days
        ]
    )
    inbox.bill("2026-11-27")
    con = inbox.warehouse()
    assert rows(con, "select event_id, day, credits from rated_events order by day, 1") == [
        ("far", date(2026, 11, 21), 1),
        ("near", date(2026, 11, 21), 1),
        ("far", date(2026, 11, 27), 2),  # a reused id further apart is a new event
    ]
    assert rows(con, "select line_no, reason from rejected_events") == [(1, "duplicate_conflict")]


def test_within_a_file_a_copy_within_the_window_of_an_accepted_one_is_a_duplicate(inbox):
    inbox.orders([BASIC])
    inbox.usage(
        [
            line("d1"),
            line("d1", occurred_at="2026-11-26T12:00:00+08:00"),  # other content
            line("d1"),  # exact
        ]
    )
    report = inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert rows(con, "select count(*) from rated_events") == [(1,)]
    assert rows(con, "select line_no, reason from rejected_events") == [(2, "duplicate_conflict")]
    assert report.ingest.duplicates == 1


# ---------------------------------------------------------------- whole files


def test_a_link_in_the_inbox_is_turned_away_unopened_and_nothing_of_its_target_is_published(
    inbox, tmp_path
):
    secret = tmp_path / "secret.jsonl"
    secret.write_text("root:x:0:0:SECRET-LINE\n", encoding="utf-8")
    inbox.orders([BASIC])
    inbox.usage([line("e1")])
    link = inbox.root / "inbox" / "usage" / "x.jsonl"
    link.symlink_to(secret)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "more.jsonl").write_text(line("e9") + "\n", encoding="utf-8")
    (inbox.root / "inbox" / "usage" / "linked-dir").symlink_to(outside)
    os.mkfifo(inbox.root / "inbox" / "usage" / "pipe.jsonl")  # would block if opened
    inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert rows(con, "select event_id from rated_events") == [("e1",)]
    assert rows(con, "select count(*) from rejected_events") == [(0,)]
    files = rows(con, "select source_file, reason, detail from rejected_files order by 1")
    usage = inbox.root / "inbox" / "usage"
    assert files == [
        (str(usage / "linked-dir"), "not_a_regular_file", "link"),
        (str(usage / "pipe.jsonl"), "not_a_regular_file", "special file"),
        (str(usage / "x.jsonl"), "not_a_regular_file", "link"),
    ]
    for table in ("rejected_events", "rejected_files", "rejected_orders"):
        assert rows(
            con, f"select count(*) from {table} where {table}::varchar like '%SECRET%'"
        ) == [(0,)]
    con.close()  # (one process shares a DuckDB instance per path)
    inbox.bill("2026-11-26")  # listed once, however often it is seen
    assert rows(inbox.warehouse(), "select count(*) from rejected_files") == [(3,)]


def write_truncated_gzip(path: Path, lines: list[str]) -> None:
    data = gzip.compress(("\n".join(lines) + "\n").encode())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: len(data) * 2 // 3])


@pytest.mark.parametrize("chunk_bytes", [64 << 20, 200], ids=["one-batch", "many-batches"])
def test_a_truncated_gzip_is_turned_away_whole_and_the_rest_of_the_inbox_is_billed(
    inbox, monkeypatch, chunk_bytes
):
    import tasks.ingest as ingest_module

    monkeypatch.setattr(ingest_module, "CHUNK_BYTES", chunk_bytes)
    if chunk_bytes < 1000:  # batch by batch, each committed: all of them taken out again
        monkeypatch.setattr(ingest_module, "SMALL_FILE_BYTES", 0)
    inbox.orders([BASIC])
    inbox.usage([line("ok1")], name="a.jsonl")
    broken = inbox.root / "inbox" / "usage" / "b.jsonl.gz"
    # (50 lines: in 200-byte batches, ~14 committed before the cut is read)
    write_truncated_gzip(broken, [line(f"t{i}") for i in range(50)])
    inbox.usage([line("ok2")], name="c.jsonl")
    inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert rows(con, "select event_id from rated_events order by 1") == [("ok1",), ("ok2",)]
    assert rows(con, "select count(*) from rejected_events") == [(0,)]
    assert rows(con, "select source_file, reason from rejected_files") == [
        (str(broken), "unreadable_file")
    ]
    con.close()  # (one process shares a DuckDB instance per path)
    # the corrected file, delivered later, is ingested as new
    broken.unlink()
    inbox.usage([line(f"t{i}") for i in range(50)], name="b.jsonl.gz", gz=True)
    inbox.bill("2026-11-26")
    assert one(inbox.warehouse(), "select count(*) from rated_events") == 52


@pytest.mark.parametrize(
    ("chunk_bytes", "small"),
    [(64 << 20, True), (64 << 20, False), (1 << 20, False)],
    ids=["small-files", "one-batch", "many-batches"],
)
def test_a_line_past_the_longest_is_cut_rejected_and_the_lines_around_it_billed(
    inbox, monkeypatch, chunk_bytes, small
):
    import tasks.ingest as ingest_module
    from tasks.inbox_files import LONG_LINE_KEPT, LONG_LINE_MARK, MAX_LINE_BYTES

    monkeypatch.setattr(ingest_module, "CHUNK_BYTES", chunk_bytes)
    if not small:
        monkeypatch.setattr(ingest_module, "SMALL_FILE_BYTES", 0)
    inbox.orders([BASIC])
    # a gzip of a few KB holding lines of 3 x and just over the limit, beside good lines;
    # and a plain file whose one line ends at the limit (read as it is)
    huge = '{"event_id": "h", "x": "' + "é" * (3 * MAX_LINE_BYTES // 2) + '"}'
    over = "y" * (MAX_LINE_BYTES + 1)
    at = line("at", note="z" * (MAX_LINE_BYTES - len(line("at", note=""))))
    assert len(at.encode()) == MAX_LINE_BYTES
    path = inbox.usage(
        [line("ok1"), huge, line("ok2"), over, line("ok3")], name="a.jsonl.gz", gz=True
    )
    inbox.usage([at], name="b.jsonl")
    inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert rows(con, "select event_id from rated_events order by 1") == [
        ("at",),
        ("ok1",),
        ("ok2",),
        ("ok3",),
    ]
    got = rows(
        con,
        "select line_no, reason, raw from rejected_events where source_file = ? order by 1",
        [str(path)],
    )
    assert [(n, r) for n, r, _ in got] == [(2, "malformed_json"), (4, "malformed_json")]
    assert got[0][2] == huge[:LONG_LINE_KEPT] + LONG_LINE_MARK
    assert got[1][2] == over[:LONG_LINE_KEPT] + LONG_LINE_MARK


def test_a_gzip_whose_compressed_bytes_hold_no_carriage_return_splits_lines_as_a_plain_file(
    inbox, monkeypatch
):
    """A lone carriage return joins its line (§3 lines end at newlines) in a gzip too, even
    one crafted so that its compressed bytes hold no 0x0D (the fast reader would end a line
    there)."""
    import tasks.ingest as ingest_module

    monkeypatch.setattr(ingest_module, "SMALL_FILE_BYTES", 0)  # batch by batch
    inbox.orders([BASIC])
    for n in range(10_000):  # (an extra field's value changes the compressed bytes)
        text = (line("a", note=n) + "\r" + line("b") + "\n" + line("c") + "\n").encode()
        packed = gzip.compress(text, mtime=0)
        if b"\r" not in packed:
            break
    else:
        pytest.skip("no gzip of these lines without a carriage return byte")
    gz = inbox.root / "inbox" / "usage" / "a.jsonl.gz"
    gz.parent.mkdir(parents=True, exist_ok=True)
    gz.write_bytes(packed)
    inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert rows(con, "select event_id from rated_events") == [("c",)]
    assert rows(con, "select line_no, reason from rejected_events") == [(1, "malformed_json")]


def test_a_half_ingested_file_replaced_by_other_content_is_taken_out_before_billing(inbox):
    """What a killed run committed of a file is never billed once the file has changed."""
    import tasks.ingest as ingest_module
    from tasks.db import connect

    inbox.orders([BASIC])
    path = inbox.usage([line("v1a"), line("v1b")])
    inbox.bill("2026-11-26")
    # pretend a killed run left the file half done
    con = connect(inbox.settings.state_db)
    con.execute("update ingested_files set complete = false where path = ?", [str(path)])
    con.close()
    path.write_text(line("v2") + "\n", encoding="utf-8")
    inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert rows(con, "select event_id from rated_events") == [("v2",)]
    assert ingest_module  # the module under test


# ---------------------------------------------------------------- orders


def test_an_orders_csv_with_a_byte_order_mark_and_rfc4180_quoting_is_read(inbox):
    path = inbox.root / "inbox" / "orders" / "bom.csv"
    path.parent.mkdir(parents=True)
    text = (
        "order_id,customer_id,product,term_months,amount_cny,purchased_at\r\n"
        "o1,c1,basic,1,30,2026-11-26T10:00:00+08:00\r\n"
        '"o,2","客户 二",package_100,,100,2026-11-26T10:00:00+08:00\r\n'
        '"o3\nnext line",c3,basic,1,30,2026-11-26T10:00:00+08:00\r\n'
        "o4,c4,basic,1,30,2026-11-26T10:00:00+08:00\r\n"
    )
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    inbox.usage([line("e1")])
    inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert rows(con, "select order_id, customer_id from orders order by 1") == [
        ("o,2", "客户 二"),
        ("o1", "c1"),
        ("o4", "c4"),
    ]
    # a quoted newline is data (here a control character in an id: bad_id), the row's
    # number is its first line's, and the rows after it are read as they are
    assert rows(con, "select line_no, raw, reason from rejected_orders") == [
        (4, '"o3\nnext line",c3,basic,1,30,2026-11-26T10:00:00+08:00', "bad_id")
    ]


def test_bad_orders_are_rejected_row_by_row_and_the_file_is_billed(inbox, monkeypatch):
    monkeypatch.setenv("ADBILL_TODAY", TODAY)
    path = inbox.root / "inbox" / "orders" / "o.csv"
    path.parent.mkdir(parents=True)
    head = b"order_id,customer_id,product,term_months,amount_cny,purchased_at\n"
    body = [
        b"o1,c1,basic,1,30,2026-11-26T10:00:00+08:00",
        b"o2,c2,basic,1,30,9999-12-31T10:00:00+08:00",
        b"o3,c3\xff,basic,1,30,2026-11-26T10:00:00+08:00",
        b"o4," + b"c" * 201 + b",basic,1,30,2026-11-26T10:00:00+08:00",
        b"o5," + b"c" * 200 + b",basic,1,30,2026-11-26T10:00:00+08:00",
        b"o6,c6,basic,1,30,2026-11-29T00:00:00+08:00",
        b"o7,c7,basic,1,30,2026-11-26T10:00:00+15:00",
        b'"o8,c8,basic,1,30,2026-11-26T10:00:00+08:00',  # a quote never closed: this line
        b"o9,c9,basic,1,30,2026-11-26T10:00:00+08:00",  # alone; the next row stands
    ]
    path.write_bytes(head + b"\n".join(body) + b"\n")
    inbox.usage([line("e1")])
    inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert rows(con, "select order_id from orders order by 1") == [("o1",), ("o5",), ("o9",)]
    assert rows(con, "select line_no, reason from rejected_orders order by 1") == [
        (3, "bad_timestamp"),
        (4, "bad_encoding"),
        (5, "bad_id"),
        (7, "in_future"),
        (8, "bad_timestamp"),
        (9, "malformed_row"),
    ]
    assert one(con, "select raw from rejected_orders where line_no = 4").startswith("o3,c3\\xff")


def _order_rows(tmp_path: Path, text: str) -> list[tuple]:
    from tasks.ingest_orders import read_order_rows

    path = tmp_path / "o.csv"
    path.write_bytes(text.encode())
    df = read_order_rows(path)
    return list(df.select("line_no", "n_fields", "order_id").iter_rows())


HEAD = "order_id,customer_id,product,term_months,amount_cny,purchased_at\n"
ROW = ",c,basic,1,30,2026-11-26T10:00:00+08:00\n"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # a quote opened and never closed is its own line, malformed; the rows after it stand
        (
            f'o1{ROW}o2,"c{ROW}o3{ROW}o4{ROW}',
            [(2, 6, "o1"), (3, -1, None), (4, 6, "o3"), (5, 6, "o4")],
        ),
        # the last line's open quote: the same, and no newline at the end
        (f'o1{ROW}"o2{ROW.rstrip()}', [(2, 6, "o1"), (3, -1, None)]),
        # text after a closing quote (read leniently) and then a quote left open
        (f'"o"x,"c{ROW}o3{ROW}', [(2, -1, None), (3, 6, "o3")]),
        # an escaped quote keeps the field open: still unclosed at the end
        (f'"o""1{ROW}o2{ROW}', [(2, -1, None), (3, 6, "o2")]),
        # a quoted field over two lines that closes is one row (RFC 4180), numbered by its first
        (f'"o\n1"{ROW}o2{ROW}', [(2, 6, "o\n1"), (4, 6, "o2")]),
    ],
    ids=["middle", "last-line", "after-close-text", "escaped-quote", "closed-multiline"],
)
def test_an_unclosed_quote_in_an_orders_csv_takes_only_its_own_line(tmp_path, body, expected):
    assert _order_rows(tmp_path, HEAD + body) == expected


def test_an_unclosed_quote_in_the_header_rejects_the_header_line_and_keeps_every_row(tmp_path):
    got = _order_rows(tmp_path, HEAD.replace("amount_cny", '"amount_cny') + f"o1{ROW}o2{ROW}")
    # no header could be read: every line is a malformed row, none lost
    assert got == [(1, -1, None), (2, -1, None), (3, -1, None)]


GOOD = "o1,c1,basic,1,30,2026-11-26T10:00:00+08:00\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # blank lines and Excel's `sep=` line before the header: rows of their own (rejected)
        ("\n" + HEAD + GOOD, [(1, 0, None), (3, 6, "o1")]),
        ("sep=,\n" + HEAD + GOOD, [(1, 2, None), (3, 6, "o1")]),
        # an empty file, or a byte-order mark alone, has no line at all; a newline is a line
        ("", []),
        ("\ufeff", []),
        ("\n", [(1, 0, None)]),
        # the header's names without case or padding
        (HEAD.upper().replace(",", " , ") + GOOD, [(2, 6, "o1")]),
        # no header: nothing guessed, every row malformed (tests/test_hostile.py bills it)
        (GOOD + GOOD.replace("o1", "o2"), [(1, -1, None), (2, -1, None)]),
        # a header naming only some fields: nothing guessed, every row malformed
        (HEAD.replace("term_months", "term") + GOOD, [(1, -1, None), (2, -1, None)]),
    ],
    ids=[
        "blank-first",
        "excel-sep",
        "empty",
        "bom-only",
        "newline-only",
        "upper-case",
        "no-header",
        "broken-header",
    ],
)
def test_an_orders_header_is_found_after_blank_lines_and_in_any_case(tmp_path, text, expected):
    assert _order_rows(tmp_path, text) == expected


def test_orders_keep_unicode_spaces_and_text_after_a_closing_quote_is_malformed(tmp_path):
    from tasks.ingest_orders import read_order_rows

    body = (
        "o1,c1,basic\u3000,1,30,2026-11-26T10:00:00+08:00\n"  # an ideographic space
        'o2,"c2"x,basic,1,30,2026-11-26T10:00:00+08:00\n'  # text after the closing quote
        "o3, c3 ,\tbasic ,1,30,2026-11-26T10:00:00+08:00\n"  # ids kept, other padding dropped
    )
    path = tmp_path / "o.csv"
    path.write_text(HEAD + body, encoding="utf-8")
    got = read_order_rows(path).select("line_no", "n_fields", "customer_id", "product").rows()
    assert got == [(2, 6, "c1", "basic\u3000"), (3, -1, None, None), (4, 6, " c3 ", "basic")]


def test_an_order_id_past_the_csv_modules_field_limit_is_bad_id_not_malformed(inbox):
    path = inbox.root / "inbox" / "orders" / "o.csv"
    path.parent.mkdir(parents=True)
    long_id = "c" * 200_000
    path.write_text(
        HEAD + f"o1,{long_id},basic,1,30,2026-11-26T10:00:00+08:00\n" + GOOD.replace("o1", "o2"),
        encoding="utf-8",
    )
    inbox.usage([line("e1")])
    inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert rows(con, "select line_no, reason from rejected_orders") == [(2, "bad_id")]
    assert rows(con, "select order_id from orders") == [("o2",)]


def test_orders_rows_are_numbered_by_newlines_a_lone_carriage_return_stays_in_its_row(tmp_path):
    body = (
        'o1,"c1\r",basic,1,30,2026-11-26T10:00:00+08:00\n'  # quoted: data (bad_id later)
        "o2,c\r2,basic,1,30,2026-11-26T10:00:00+08:00\r\n"  # unquoted: the row is malformed
        "o3,c3,basic,1,30,2026-11-26T10:00:00+08:00\n"
    )
    assert _order_rows(tmp_path, HEAD + body) == [(2, 6, "o1"), (3, -1, None), (4, 6, "o3")]
    # a file of old Mac line ends: its carriage returns end its lines, also with a newline
    # at its end, a row of another editor's ends appended, or a newline in a quoted field
    mac = (HEAD + GOOD + GOOD.replace("o1", "o2")).replace("\n", "\r")
    assert _order_rows(tmp_path, mac) == [(2, 6, "o1"), (3, 6, "o2")]
    assert _order_rows(tmp_path, mac + "\n") == [(2, 6, "o1"), (3, 6, "o2")]
    appended = mac + GOOD.replace("o1", "o3")
    assert _order_rows(tmp_path, appended) == [(2, 6, "o1"), (3, 6, "o2"), (4, 6, "o3")]
    quoted = mac.replace(",c1,", ',"c\n1",')
    # (both its line ends count there: the quoted newline too)
    assert [r[:2] for r in _order_rows(tmp_path, quoted)] == [(2, 6), (4, 6)]
    # carriage returns inside a quoted field are data: they make no file old Mac
    crs = (
        HEAD
        + '"o1\r\r\r\r\r\r",c1,basic,1,30,2026-11-26T10:00:00+08:00\n'
        + GOOD.replace("o1", "o2")
    )
    assert _order_rows(tmp_path, crs) == [(2, 6, "o1\r\r\r\r\r\r"), (3, 6, "o2")]


def test_a_month_of_the_largest_quantities_sums_on_its_statement(inbox, monkeypatch):
    """Each quantity below 10^9 (§3), a month of them is not: 1,001 events of 999,999,999
    sum to 1,000,999,998,999, past decimal(18, 6), which stopped every run (the statement's
    line, migration 017). The warehouse reads it whole, beside a month's statement_lines
    file written before the type was widened."""
    import duckdb

    from tasks.db import connect

    monkeypatch.setenv("ADBILL_TODAY", "2026-11-02")
    october = "2026-10-31T10:00:00+08:00"
    inbox.orders([order("o2", "c2", "basic", 1, "30", october)])
    inbox.usage([line("small", customer_id="c2", occurred_at=october)])
    inbox.bill("2026-10-31")
    # October's file as an engine before migration 017 wrote it
    state = inbox.settings.state_db
    con = connect(state)
    (path,) = rows(con, "select path from day_files where table_name = 'statement_lines'")[0]
    con.close()
    full = str(state.parent / path)
    narrow = duckdb.connect()
    narrow.execute(
        f"copy (select * replace (cast(quantity as decimal(18, 6)) as quantity) "
        f"from read_parquet('{full}')) to '{full}.tmp' (format parquet)"
    )
    assert narrow.execute(
        f"select typeof(quantity) from read_parquet('{full}.tmp')"
    ).fetchone() == ("DECIMAL(18,6)",)
    narrow.close()
    os.replace(full + ".tmp", full)
    big = {"function": "digital_human_spokesperson", "quantity": 999_999_999}
    inbox.orders([order("o1", "c1", "basic", 1, "30", "2026-11-01T10:00:00+08:00")])
    inbox.usage(
        [line(f"e{i}", occurred_at="2026-11-01T11:00:00+08:00", **big) for i in range(1_001)]
    )
    inbox.bill("2026-11-01")
    wh = inbox.warehouse()
    assert rows(wh, "select customer_id, month, quantity from statement_lines order by 1") == [
        ("c1", date(2026, 11, 1), Decimal("1000999998999")),
        ("c2", date(2026, 10, 1), Decimal("1")),
    ]


def test_a_renewal_queue_past_the_calendar_starts_its_last_terms_at_its_end(inbox, monkeypatch):
    """8,200 annual renewals, each a valid order, queue terms for 8,000 years: the queue's
    date passed Python's year 9999 and stopped every run (OverflowError). The terms that
    would start after NEVER start at it (the one straddling it keeps its own start): every
    order accepted, every credit paid for in the deferred figures."""
    from tasks.pools import NEVER

    monkeypatch.setenv("ADBILL_TODAY", TODAY)
    n = 8_200
    inbox.orders(
        [BASIC]
        + [
            order(f"r{i:05d}", "c9", "basic", 12, "360", "2026-11-26T10:30:00+08:00")
            for i in range(n)
        ]
    )
    inbox.usage([line("e1")])
    inbox.bill("2026-11-26")
    wh = inbox.warehouse()
    assert one(wh, "select count(*) from orders") == n + 1
    assert one(wh, "select count(*) from rejected_orders") == 0
    starts = rows(
        wh,
        "select min(available_from) as start from pools where customer_id = 'c9' "
        "group by order_id order by start",
    )
    before = [s for (s,) in starts if s < NEVER]
    assert len(before) + sum(1 for (s,) in starts if s == NEVER) == n
    assert 7_900 < len(before) < n  # (each 360 days after the one before it)
    assert one(wh, "select deferred_cny from customer_days where customer_id = 'c9'") == 360 * n
