"""Billing-rules §3: what the inbox accepts, what it rejects and why, and duplicates."""

from __future__ import annotations

import json
import os
from decimal import Decimal

import pytest

from tests.conftest import Inbox, event, one, order, rows

BASIC = order("o1", "c1", "basic", 1, "30", "2026-11-26T10:00:00+08:00")
T = "2026-11-26T11:00:00+08:00"


def good(event_id="e1", **changes) -> dict:
    e = event(event_id, "c1", "copy_generation", 1, T)
    e.update(changes)
    return e


BAD_LINES = [
    ('{"event_id": "x1", "customer_id": ', "malformed_json"),
    ("[1, 2, 3]", "malformed_json"),
    ("", "empty_line"),
    (" \t  ", "empty_line"),  # only white space: blank, whichever kind
    (
        json.dumps({k: v for k, v in good("x2").items() if k != "account_id"}),
        "missing_field:account_id",
    ),
    (json.dumps(good("x3", quantity="abc")), "wrong_type:quantity"),
    (json.dumps(good("x4", customer_id=17)), "wrong_type:customer_id"),
    (json.dumps(good("x5", function="teleportation")), "unknown_function"),
    (json.dumps(good("x6", quantity=0)), "quantity_not_positive"),
    (json.dumps(good("x7", quantity=-3)), "quantity_not_positive"),
    (json.dumps(good("x8", function="image_to_video", quantity=12)), "quantity_not_allowed"),
    (json.dumps(good("x9", quantity=2.5)), "quantity_not_whole"),
    (
        json.dumps(good("x10", quantity=1.0000001, function="video_translation")),
        "quantity_too_precise",
    ),
    (json.dumps(good("x11", occurred_at="2026-11-26T11:00:00")), "timestamp_without_offset"),
    (json.dumps(good("x12", occurred_at="yesterday at noon")), "bad_timestamp"),
    (json.dumps(good("x13", status="maybe")), "bad_status"),
    (json.dumps(good("x14", customer_id="c404")), "unknown_customer"),
    (json.dumps(good("x15", function="material_recreation")), "not_entitled"),
]


@pytest.mark.parametrize(("raw", "reason"), BAD_LINES, ids=[r for _, r in BAD_LINES])
def test_each_bad_usage_line_is_rejected_with_its_reason_and_raw_text(inbox, raw, reason):
    inbox.orders([BASIC])
    inbox.usage([good("ok1"), raw, good("ok2", occurred_at="2026-11-26T03:00:00Z")])
    inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert rows(con, "select line_no, raw, reason from rejected_events") == [(2, raw, reason)]
    # the good lines around it are billed: a bad line never takes good lines with it
    assert one(con, "select count(*), sum(credits) from rated_events") == (2, 2)


# a line breaking a row-schema rule and a business rule at once: the row schema's reason
# (the business checks run over every line in the same pass, its reason replaces theirs)
BOTH_BROKEN = [
    (good("y1", customer_id="c404", status="maybe"), "bad_status"),
    (good("y2", function="teleportation", quantity="abc"), "wrong_type:quantity"),
    (
        good("y3", function="material_recreation", occurred_at="2026-11-26T11:00:00"),
        "timestamp_without_offset",
    ),
    (good("y4", quantity=2.5, occurred_at="2026-11-26T11:00:00+15:00"), "bad_timestamp"),
    (good("y6", occurred_at="2031-01-01T00:00:00+08:00", status="maybe"), "bad_status"),
    (good("y5", function="image_to_video", quantity=12.0000001), "quantity_too_precise"),
]


def test_a_row_schema_reason_comes_before_the_business_checks(inbox):
    inbox.orders([BASIC])
    inbox.usage([good("ok1"), *[line for line, _ in BOTH_BROKEN], good("ok2")])
    inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert rows(con, "select line_no, reason from rejected_events order by 1") == [
        (i, reason) for i, (_, reason) in enumerate(BOTH_BROKEN, start=2)
    ]
    assert one(con, "select count(*) from rated_events") == 2


def test_a_line_not_clean_that_the_row_schema_names_no_reason_for_stops_the_run(inbox, monkeypatch):
    """sql/extract_events.sql's `clean` and the row schema agree (tests/test_validate.py);
    were they not to, such a line would be neither an event nor a reject: the batch stops,
    nothing of it committed, rather than lose the line."""
    import tasks.ingest_usage as usage_module

    real = usage_module.failing_rows
    monkeypatch.setattr(usage_module, "failing_rows", lambda df, kind: real(df, kind).head(0))
    inbox.orders([BASIC])
    inbox.usage([good("ok1"), BOTH_BROKEN[0][0], good("ok2")])
    with pytest.raises(RuntimeError, match="names no reason"):
        inbox.bill("2026-11-26")


@pytest.mark.parametrize("step", ["list_inbox", "digest_ahead"])
def test_a_usage_file_rewritten_after_its_listing_or_digest_is_ingested_as_it_is_now(
    inbox, monkeypatch, step
):
    """A file is listed (its stat taken), then digested ahead while the orders are
    ingested; a file whose bytes changed after either is digested again, so its content
    and digest agree (no stale digest recorded, no line of the old content billed)."""
    import hashlib

    import tasks.ingest as ingest

    inbox.orders([BASIC])
    path = inbox.usage([good("old1"), good("old2")])
    real = getattr(ingest, step)

    def then_rewritten(*args):
        outcome = real(*args)
        path.write_text(json.dumps(good("new1")) + "\n", encoding="utf-8")
        return outcome

    monkeypatch.setattr(ingest, step, then_rewritten)
    inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert rows(con, "select event_id from rated_events") == [("new1",)]
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert one(con, f"select count(*) from ingested_files where sha256 = '{sha}'") == 1


def test_all_bad_lines_in_one_gzip_file_leave_the_good_ones_billed(inbox):
    inbox.orders([BASIC])
    inbox.usage([good("ok1")] + [raw for raw, _ in BAD_LINES] + [good("ok2")], gz=True)
    report = inbox.bill("2026-11-26")
    con = inbox.warehouse()
    got = rows(con, "select reason, count(*) from rejected_events group by 1 order by 1")
    want: dict[str, int] = {}
    for _, reason in BAD_LINES:
        want[reason] = want.get(reason, 0) + 1
    assert dict(got) == want
    assert report.ingest.events_accepted == 2
    assert one(con, "select count(*) from rated_events") == 2


def test_exact_duplicate_is_counted_and_billed_once_across_files(inbox):
    inbox.orders([BASIC])
    inbox.usage([good("e1"), good("e1")])
    inbox.usage([good("e1"), good("e2")])
    report = inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert report.ingest.duplicates == 2
    assert one(con, "select count(*), sum(credits) from rated_events") == (2, 2)
    assert one(con, "select count(*) from rejected_events") == 0
    assert one(con, "select sum(duplicates) from ingested_files") == 2


def test_same_event_id_with_other_content_is_a_conflict_and_the_first_copy_stands(inbox):
    inbox.orders([BASIC])
    inbox.usage([good("e1"), good("e1", quantity=7)])
    inbox.bill("2026-11-26")
    inbox.usage([good("e1", quantity=9)])  # a later run: still the first copy stands
    inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert one(con, "select quantity, credits from rated_events") == (Decimal("1"), 1)
    assert rows(con, "select reason, count(*) from rejected_events group by 1") == [
        ("duplicate_conflict", 2)
    ]


def test_a_file_is_ingested_once_by_content_whatever_its_name(inbox):
    inbox.orders([BASIC])
    first = inbox.usage([good("e1"), good("e2")])
    inbox.bill("2026-11-26")
    (first.parent / "copy-of-it.jsonl").write_bytes(first.read_bytes())
    report = inbox.bill("2026-11-26")
    assert report.ingest.files == [] and len(report.ingest.skipped_files) == 3
    con = inbox.warehouse()
    assert one(con, "select count(*) from rated_events") == 2


def test_a_moved_data_dir_hashes_its_inbox_once_not_every_run(inbox, tmp_path, monkeypatch):
    """Files known by content under a new path or stat (a data dir moved or restored, a file
    touched) are hashed once, then skipped by path and stat like the files ingested there."""
    inbox.orders([BASIC])
    inbox.usage([good("e1"), good("e2")])
    inbox.bill("2026-11-26")
    moved = inbox.copy_to(tmp_path / "moved")
    hashed: list[str] = []
    digest = ingest_module.file_digest
    monkeypatch.setattr(
        ingest_module,
        "file_digest",
        lambda path, *keep: hashed.append(path.name) or digest(path, *keep),
    )
    moved.bill("2026-11-26")
    listed = sorted(p.name for p in (moved.root / "inbox").rglob("*") if p.is_file())
    assert sorted(hashed) == listed and len(listed) == 2
    hashed.clear()
    report = moved.bill("2026-11-26")
    assert hashed == [] and len(report.ingest.skipped_files) == 2
    usage = next(p for p in (moved.root / "inbox").rglob("*.jsonl"))
    os.utime(usage, ns=(10**18, 10**18))  # touched: hashed again, still known
    report = moved.bill("2026-11-26")
    assert hashed == [usage.name] and report.ingest.files == []
    assert one(moved.warehouse(), "select count(*) from rated_events") == 2


def test_failed_events_are_recorded_and_cost_nothing(inbox):
    inbox.orders([BASIC])
    inbox.usage([good("e1", status="failed", function="custom_avatar"), good("e2")])
    inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert rows(con, "select event_id, status, credits from rated_events order by 1") == [
        ("e1", "failed", 0),
        ("e2", "succeeded", 1),
    ]
    assert one(con, "select used from customer_days") == 1


def test_unknown_extra_fields_are_ignored(inbox):
    inbox.orders([BASIC])
    inbox.usage([good("e1", campaign="winter", debug={"x": 1})])
    inbox.bill("2026-11-26")
    assert one(inbox.warehouse(), "select count(*) from rated_events") == 1


BAD_ORDERS = [
    ("o2,c2,gold,1,30,2026-11-26T10:00:00+08:00", "unknown_product"),
    ("o3,c3,basic,3,90,2026-11-26T10:00:00+08:00", "bad_term"),
    ("o4,c4,basic,,30,2026-11-26T10:00:00+08:00", "bad_term"),
    ("o5,c5,package_100,12,100,2026-11-26T10:00:00+08:00", "bad_term"),
    ("o6,c6,basic,6,30,2026-11-26T10:00:00+08:00", "wrong_amount"),
    ("o7,c7,basic,1,thirty,2026-11-26T10:00:00+08:00", "bad_amount"),
    # by value and exactly: a fen too many, or a thousandth, is not the price
    ("o11,c11,basic,1,30.01,2026-11-26T10:00:00+08:00", "wrong_amount"),
    ("o12,c12,basic,1,30.001,2026-11-26T10:00:00+08:00", "wrong_amount"),
    ("o13,c13,basic,1,30.0000000000000000001,2026-11-26T10:00:00+08:00", "bad_amount"),
    ("o14,c14,basic,1.5,30,2026-11-26T10:00:00+08:00", "bad_term"),
    ("o8,c8,basic,1,30,2026-11-26T10:00:00", "timestamp_without_offset"),
    ("o9,c9,basic,1,30,next tuesday", "bad_timestamp"),
    ("o1,c1,basic,1,30,2026-11-26T12:00:00+08:00", "duplicate_conflict"),
    ("o10,c10,basic,1", "malformed_row"),
    (",c11,basic,1,30,2026-11-26T10:00:00+08:00", "missing_field:order_id"),
    # rows of nothing are kept too, never dropped silently
    (",,,,,", "missing_field:customer_id"),  # (the first in the reasons' order)
    ('""', "malformed_row"),
    ("", "empty_line"),
    (" \t ", "empty_line"),
]


@pytest.mark.parametrize(("raw", "reason"), BAD_ORDERS, ids=[r for _, r in BAD_ORDERS])
def test_each_bad_order_row_is_rejected_with_its_reason(inbox, raw, reason):
    good_row = "o1,c1,basic,1,30,2026-11-26T10:00:00+08:00"
    inbox.orders([good_row, raw, "o20,c20,package_100,,100,2026-11-26T10:00:00+08:00"])
    inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert rows(con, "select line_no, raw, reason from rejected_orders") == [(3, raw, reason)]
    assert rows(con, "select order_id from orders order by 1") == [("o1",), ("o20",)]


def test_an_amount_and_a_term_written_with_zero_decimals_are_the_price_and_the_term(inbox):
    inbox.orders(
        [
            "o1,c1,basic,1.0,30.000,2026-11-26T10:00:00+08:00",
            "o2,c2,package_100,,100.000000000000000000,2026-11-26T10:00:00+08:00",
            "o3,c3,basic,6,180.00,2026-11-26T10:00:00+08:00",
        ]
    )
    inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert one(con, "select count(*) from rejected_orders") == 0
    assert rows(con, "select order_id, term_months, amount_cny from orders order by 1") == [
        ("o1", 1, Decimal("30.00")),
        ("o2", None, Decimal("100.00")),
        ("o3", 6, Decimal("180.00")),
    ]


def test_an_exact_duplicate_order_row_is_ignored(inbox):
    row = "o1,c1,basic,1,30,2026-11-26T10:00:00+08:00"
    inbox.orders([row, row])
    report = inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert one(con, "select count(*) from pools") == 1
    assert one(con, "select count(*) from rejected_orders") == 0
    assert report.ingest.order_duplicates == 1 and report.ingest.duplicates == 0


def test_a_timestamp_in_utc_bills_on_its_local_day(inbox):
    inbox.orders([BASIC])
    inbox.usage([good("e1", occurred_at="2026-11-26T16:30:00Z")])  # 00:30 on the 27th local
    inbox.bill("2026-11-27")
    assert one(inbox.warehouse(), "select day from rated_events").isoformat() == "2026-11-27"


# ---------------------------------------------------------------- batches and line readers

import tasks.ingest as ingest_module  # noqa: E402
from tasks.inbox_files import iter_line_chunks  # noqa: E402
from tasks.ingest_usage import UsageIngest  # noqa: E402

MIXED = [
    good("b1"),
    good("b2"),
    "",
    good("b1"),  # exact re-delivery, in a later batch
    '{"event_id": "b3", ',
    good("b2", quantity=5),  # conflicting copy, in a later batch
    good("b4"),
    json.dumps(good("b5", occurred_at="2026-11-26T11:00:00")),
    good("b4"),
    good("b6"),
]


def ingest_outcome(con) -> tuple:
    return (
        rows(con, "select event_id, line_no, quantity from events order by line_no"),
        rows(con, "select line_no, reason, raw from rejected_events order by line_no"),
        one(
            con,
            "select lines, accepted, rejected, duplicates, complete from ingested_files "
            "where kind = 'usage'",
        ),
    )


@pytest.fixture
def tiny_batches(monkeypatch):
    """Batches of a few lines, so one small file spans many of them."""
    monkeypatch.setattr(ingest_module, "CHUNK_BYTES", 300)
    monkeypatch.setattr(ingest_module, "SMALL_FILE_BYTES", 0)  # every file batch by batch


def test_lines_split_into_many_batches_give_the_same_outcome_as_one_batch(tmp_path, monkeypatch):
    outcomes = []
    for chunk_bytes, scan_rows in ((64 << 20, 32_768), (300, 32_768), (64 << 20, 3)):
        monkeypatch.setattr(ingest_module, "CHUNK_BYTES", chunk_bytes)
        monkeypatch.setattr("tasks.ingest_usage.SCAN_ROWS", scan_rows)  # DuckDB's scan units
        monkeypatch.setattr(ingest_module, "SMALL_FILE_BYTES", 0)
        box = Inbox(tmp_path / f"data-{chunk_bytes}-{scan_rows}")
        box.orders([BASIC])
        box.usage(MIXED)
        box.bill("2026-11-26")
        outcomes.append(ingest_outcome(box.warehouse()))
    assert outcomes[0] == outcomes[1] == outcomes[2]
    events, rejects, file_row = outcomes[0]
    assert [e for e, *_ in events] == ["b1", "b2", "b4", "b6"]
    assert [(n, r) for n, r, _ in rejects] == [
        (3, "empty_line"),
        (5, "malformed_json"),
        (6, "duplicate_conflict"),
        (8, "timestamp_without_offset"),
    ]
    assert file_row == (10, 4, 4, 2, True)


def test_the_fast_and_the_plain_line_readers_split_a_file_alike(tmp_path):
    path = tmp_path / "u.jsonl.gz"
    import gzip

    text = "\n".join(["{}", "", "  ", '{"a": "x"}', "\t{}", "last without newline"])
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(text)
    for chunk_bytes in (24, 1 << 20):
        fast = iter_line_chunks(path, chunk_bytes, fast=True)
        plain = iter_line_chunks(path, chunk_bytes, fast=False)
        as_rows = [r for t in fast for r in zip(*t.to_pydict().values(), strict=True)]
        want = [r for t in plain for r in zip(*t.to_pydict().values(), strict=True)]
        lines = [(n, raw, True) for n, raw in enumerate(text.split("\n"), start=1)]
        assert as_rows == want == lines


def test_a_file_with_carriage_returns_or_bad_bytes_keeps_every_line(inbox):
    inbox.orders([BASIC])
    path = inbox.root / "inbox" / "usage" / "odd.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps(good("c1")).encode(),
        b'{"event_id": "c2"\r, "x": 1}',
        json.dumps(good("c3")).encode() + b"\r",
        b'{"event_id": "\xff\xfe"}',
        json.dumps(good("c4")).encode(),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert rows(con, "select event_id, line_no from events order by 2") == [
        ("c1", 1),
        ("c3", 3),
        ("c4", 5),
    ]
    assert [n for (n,) in rows(con, "select line_no from rejected_events order by 1")] == [2, 4]


def test_a_file_killed_between_batches_resumes_after_the_last_committed_one(
    tmp_path, tiny_batches, monkeypatch
):
    whole = Inbox(tmp_path / "whole")
    whole.orders([BASIC])
    whole.usage(MIXED)
    w_counts = counted(whole.bill("2026-11-26"))

    box = Inbox(tmp_path / "killed")
    box.orders([BASIC])
    box.usage(MIXED)
    real = UsageIngest.batch
    calls = {"n": 0}

    def dies_on_the_third(self, rows, files, base):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return real(self, rows, files, base)

    monkeypatch.setattr(UsageIngest, "batch", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        box.bill("2026-11-26")
    monkeypatch.setattr(UsageIngest, "batch", real)
    resumed = counted(box.bill("2026-11-26"))
    events, rejects, file_row = ingest_outcome(box.warehouse())
    w_events, w_rejects, w_file = ingest_outcome(whole.warehouse())
    assert [e[:1] + e[2:] for e in events] == [e[:1] + e[2:] for e in w_events]
    assert rejects == w_rejects
    assert file_row == w_file
    # the run that completes the file reports all of it, batches of the killed run included
    assert resumed == w_counts
    assert w_counts["events_accepted"] == 4 and w_counts["duplicates"] == 2


def counted(report) -> dict:
    keys = ("events_accepted", "events_rejected", "duplicates", "rejected_by_reason")
    return {k: v for k, v in report.summary().items() if k in keys}


@pytest.mark.parametrize(
    ("odd", "reason"),
    [
        (b'{"event_id": "\xff\xfe"}', "bad_encoding"),  # never repaired (§3)
        (b'{"event_id": "a\x1fb"}', "malformed_json"),
    ],
    ids=["bad-utf8", "0x1f"],
)
def test_bytes_the_fast_reader_refuses_are_read_the_plain_way_after_committed_batches(
    inbox, tiny_batches, odd, reason
):
    inbox.orders([BASIC])
    path = inbox.root / "inbox" / "usage" / "odd.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    good_lines = [json.dumps(good(f"g{i}")).encode() for i in range(8)]
    path.write_bytes(b"\n".join([*good_lines[:5], odd, *good_lines[5:]]) + b"\n")
    inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert rows(con, "select line_no from events order by 1") == [
        (n,) for n in (1, 2, 3, 4, 5, 7, 8, 9)
    ]
    assert rows(con, "select line_no, reason from rejected_events") == [(6, reason)]
    assert one(
        con, "select lines, accepted, rejected, complete from ingested_files where kind = 'usage'"
    ) == (9, 8, 1, True)


def test_id_hashes_are_recomputed_when_duckdbs_hash_changes(inbox):
    from tasks.db import connect

    inbox.orders([BASIC])
    inbox.usage([good("h1"), good("h2")])
    inbox.bill("2026-11-26")
    db = inbox.settings.state_db
    con = connect(db)
    # as if an older DuckDB had stored these: another probe, other hashes
    con.execute("update adbill_meta set value = 'other' where key = 'id_hash_probe'")
    con.execute("update events set id_hash = 42")
    con.close()
    con = connect(db)
    assert rows(con, "select count(*) from events where id_hash = hash(event_id)") == [(2,)]
    con.close()
    # and a re-delivery after that is still recognised as a duplicate
    inbox.usage([good("h1")])
    report = inbox.bill("2026-11-26")
    assert report.ingest.duplicates == 1


# ---------------------------------------------------------------- many small files


def spread(box: Inbox, lines: list, per_file: int) -> None:
    for i in range(0, len(lines), per_file):
        box.usage(lines[i : i + per_file], name=f"part-{i // per_file:04d}.jsonl")


MANY = [good(f"m{i}") for i in range(60)] + MIXED + [good("m3", quantity=2), good("m5")]


@pytest.mark.parametrize(
    "keep_bytes, group_rows, serial_bytes, kept",
    [(None, None, None, {True}), (2_000, 7, 1_000, {True, False}), (0, 1, 0, {False})],
)
def test_small_files_taken_together_bill_as_one_file_holding_their_lines(
    tmp_path, monkeypatch, keep_bytes, group_rows, serial_bytes, kept
):
    """(also with some or none of the files' bytes kept from their digest's read, small and
    larger files digested on one thread or several, and the group's table in record batches
    of a few rows)"""
    if keep_bytes is not None:
        monkeypatch.setattr(ingest_module, "KEEP_BYTES", keep_bytes)
        monkeypatch.setattr(ingest_module, "SERIAL_DIGEST_BYTES", serial_bytes)
        monkeypatch.setattr("tasks.ingest_usage.SCAN_ROWS", group_rows)
    single = Inbox(tmp_path / "one")
    single.orders([BASIC])
    single.usage(MANY, name="part-0000.jsonl")
    single_counts = counted(single.bill("2026-11-26"))
    many = Inbox(tmp_path / "many")
    many.orders([BASIC])
    spread(many, MANY, 5)
    read_whole, used_kept = ingest_module.read_whole, []

    def reading(path, limit, kept_bytes=None):
        used_kept.append(kept_bytes is not None)
        return read_whole(path, limit, kept_bytes)

    monkeypatch.setattr(ingest_module, "read_whole", reading)
    many_counts = counted(many.bill("2026-11-26"))
    assert len(used_kept) == 15 and set(used_kept) == kept  # (kept in path order: the first)
    assert used_kept[0] or not any(used_kept)
    q = "select event_id, quantity, credits from rated_events order by event_id"
    assert rows(many.warehouse(), q) == rows(single.warehouse(), q)
    assert many_counts == single_counts
    # each file keeps its own lines, counts and rejects, with its own line numbers
    con = many.warehouse()
    assert one(
        con,
        "select count(*), sum(lines), sum(accepted) + sum(rejected) + sum(duplicates) "
        "from ingested_files where kind = 'usage'",
    ) == (15, 72, 72)
    assert rows(
        con,
        "select source_file like '%part-0012.jsonl', line_no, reason "
        "from rejected_events order by source_file, line_no",
    )[:2] == [
        (True, 3, "empty_line"),
        (True, 5, "malformed_json"),
    ]


def test_a_small_file_rewritten_after_its_digest_is_billed_as_digested_then_as_it_is_now(
    inbox, monkeypatch
):
    """A small file's lines come from the bytes its digest was taken of, and it is registered
    with the size and mtime it had then: rewritten after that, the next run sees a changed
    stat, digests it again and ingests the new content (the old stat recorded with the new
    bytes would have had it skipped)."""
    inbox.orders([BASIC])
    path = inbox.usage([good("old1")])
    st = path.stat()
    real = ingest_module._new_files

    def then_rewritten(con, paths, *args, **kwargs):
        fresh = real(con, paths, *args, **kwargs)
        if path in paths:
            path.write_text(json.dumps(good("new1")) + "\n", encoding="utf-8")
            later = st.st_mtime_ns + 10**9
            os.utime(path, ns=(later, later))
        return fresh

    monkeypatch.setattr(ingest_module, "_new_files", then_rewritten)
    inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert rows(con, "select event_id from rated_events") == [("old1",)]
    registered = "select bytes, mtime_ns from ingested_files where kind = 'usage'"
    assert rows(con, registered) == [(st.st_size, st.st_mtime_ns)]
    con.close()
    monkeypatch.setattr(ingest_module, "_new_files", real)
    inbox.bill("2026-11-26")
    q = "select event_id from rated_events order by 1"
    assert rows(inbox.warehouse(), q) == [("new1",), ("old1",)]


def test_a_group_of_small_files_killed_before_its_decisions_is_ingested_again_alike(
    tmp_path, monkeypatch
):
    """The group's lines are committed before its file-wide decisions: killed between the
    two, its files are left half done, and the next run takes them out and ingests them
    again as a group (one by one, a later file's copy could stand before an earlier one's)."""
    whole = Inbox(tmp_path / "whole")
    whole.orders([BASIC])
    spread(whole, MANY, 5)
    w_counts = counted(whole.bill("2026-11-26"))
    box = Inbox(tmp_path / "killed")
    box.orders([BASIC])
    spread(box, MANY, 5)
    real = UsageIngest.decide

    def dies(self, files, lines, read=None):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(UsageIngest, "decide", dies)
    with pytest.raises(KeyboardInterrupt):
        box.bill("2026-11-26")
    from tasks.db import connect

    con = connect(box.settings.state_db)
    left = rows(con, "select lines_done, complete from ingested_files where kind = 'usage'")
    con.close()
    assert len(left) == 15 and {done for done, _ in left} >= {5} and not any(c for _, c in left)
    monkeypatch.setattr(UsageIngest, "decide", real)
    assert counted(box.bill("2026-11-26")) == w_counts
    assert ingest_outcome_many(box.warehouse()) == ingest_outcome_many(whole.warehouse())


def ingest_outcome_many(con) -> tuple:
    return (
        rows(con, "select event_id, quantity from events order by event_key"),
        rows(
            con,
            "select regexp_extract(source_file, '[^/]+$'), line_no, reason "
            "from rejected_events order by all",
        ),
        rows(
            con,
            "select regexp_extract(path, '[^/]+$'), lines, accepted, rejected, duplicates, "
            "complete "
            "from ingested_files where kind = 'usage' order by path",
        ),
    )


def test_the_reasons_thread_connection_keeps_the_session_time_zone():
    """The lines that are not clean are parsed again on a connection of the reasons thread's
    own: it has the run's time zone (a DuckDB cursor starts in the machine's), so their
    timestamps come back as the row schema expects, and the line functions."""
    import duckdb

    from tasks.ingest_usage import _cursor

    con = duckdb.connect()
    for zone in ("UTC", "Asia/Shanghai", "America/St_Johns"):
        con.execute(f"set TimeZone = '{zone}'")
        cur = _cursor(con)
        assert cur.execute("select current_setting('TimeZone')").fetchall() == [(zone,)]
        assert cur.execute("select quantity_literal('{\"quantity\": 1.50}')").fetchall() == [
            ("1.50",)
        ]
        cur.close()


def test_a_group_of_small_gzip_files_holds_no_more_than_a_group_of_bytes_decompressed(
    inbox, monkeypatch
):
    """Small files are grouped by their size on disk, but a gzip's lines take their
    decompressed size in memory: a group is cut where its bytes as read would pass
    GROUP_BYTES (every file still ingested, in path order)."""
    import tasks.ingest as ingest

    monkeypatch.setattr(ingest, "GROUP_BYTES", 2_000)
    groups: list[int] = []
    real = ingest._ingest_group

    def recorded(con, usage, read, run_id):
        if read:
            groups.append(sum(len(data) for _, data in read))
        return real(con, usage, read, run_id)

    monkeypatch.setattr(ingest, "_ingest_group", recorded)
    inbox.orders([BASIC])
    for k in range(6):  # ~800 bytes each decompressed, ~150 on disk
        inbox.usage([good(f"g{k}-{i}") for i in range(4)], gz=True)
    inbox.bill("2026-11-26")
    assert len(groups) >= 3 and max(groups) <= 2_000
    assert one(inbox.warehouse(), "select count(*) from rated_events") == 24


def test_a_line_longer_than_the_fast_readers_block_goes_the_plain_way_and_keeps_every_line(
    inbox, monkeypatch
):
    """pyarrow's reader refuses a line that straddles two of its blocks (READ_BLOCK_BYTES);
    the file is then read the plain way and every line is billed or rejected as usual."""
    import tasks.inbox_files as inbox_files

    monkeypatch.setattr(inbox_files, "READ_BLOCK_BYTES", 1024)
    monkeypatch.setattr(ingest_module, "SMALL_FILE_BYTES", 0)
    plain = []
    real = inbox_files._python_line_chunks

    def plain_way(path, chunk_bytes):
        plain.append(path.name)
        return real(path, chunk_bytes)

    monkeypatch.setattr(inbox_files, "_python_line_chunks", plain_way)
    inbox.orders([BASIC])
    path = inbox.usage([good("a1"), good("long", note="x" * 5000), good("a2")])
    report = inbox.bill("2026-11-26")
    assert path.name in plain  # (the fast reader refused it)
    assert report.ingest.events_accepted == 3
    assert rows(inbox.warehouse(), "select event_id from rated_events order by 1") == [
        ("a1",),
        ("a2",),
        ("long",),
    ]


def test_a_line_just_past_the_long_line_size_is_scanned_alone_and_one_at_it_is_not():
    """in_record_batches: a line of LONG_LINE_BYTES bytes stays in its record batch; one byte
    more and it has a record batch of its own (DuckDB parses a vector's lines together).
    Rows keep their order either way."""
    import pyarrow as pa

    from tasks.ingest_usage import LONG_LINE_BYTES, in_record_batches

    at, past = "é" * (LONG_LINE_BYTES // 2), "x" * (LONG_LINE_BYTES + 1)  # (bytes, not chars)
    raws = ["a", at, "b", past, "c", past, past]
    table = in_record_batches(pa.table({"raw": pa.array(raws, pa.string()), "n": range(7)}))
    assert [b.num_rows for b in table.to_batches()] == [3, 1, 1, 1, 1]
    assert table["n"].to_pylist() == list(range(7))


def test_the_inbox_is_listed_in_path_order_part_by_part(tmp_path):
    """Files are ingested in path order: folder part by folder part, as Paths compare
    (`a/z.jsonl` before `a-b/...`, though `/` sorts after `-` in the path's text), with
    each file's stat as listed."""
    from tasks.inbox_files import list_inbox

    names = ["a.jsonl", "a-b/c.jsonl", "a/z.jsonl", "a/b/y.jsonl", "A.jsonl"]
    for name in names:
        path = tmp_path / "usage" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}\n" * len(name), encoding="utf-8")
    listing = list_inbox(tmp_path)
    want = ["A.jsonl", "a/b/y.jsonl", "a/z.jsonl", "a-b/c.jsonl", "a.jsonl"]
    assert [p.relative_to(tmp_path / "usage").as_posix() for p in listing.usage] == want
    assert listing.usage == sorted(listing.usage)
    assert listing.stats == {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in listing.usage}
