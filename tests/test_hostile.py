"""Hostile inputs and operator typos found by a review of issue 12, each a regression test:
what a sender or an operator does never stops the night's billing, repairs data, leaks
bytes from outside the inbox or makes a run take days (billing-rules §3, interfaces.md)."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
from datetime import date
from pathlib import Path

import pytest

import tasks.ingest as ingest_module
from tasks.pipeline import RunRefused, check_run
from tasks.settings import SettingError, Settings
from tests.conftest import Inbox, event, one, order, rows

BASIC = order("o1", "c1", "basic", 1, "30", "2026-11-26T10:00:00+08:00")
T = "2026-11-26T11:00:00+08:00"


@pytest.fixture(autouse=True)
def today(monkeypatch):
    monkeypatch.setenv("ADBILL_TODAY", "2026-11-27")


def line(event_id: str, **changes) -> str:
    e = event(event_id, "c1", "copy_generation", 1, T)
    e.update(changes)
    return json.dumps(e)


def usage_dir(inbox: Inbox) -> Path:
    path = inbox.root / "inbox" / "usage"
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---------------------------------------------------------------- files


def test_a_file_whose_name_is_not_utf8_is_turned_away_and_the_rest_billed(inbox):
    inbox.orders([BASIC])
    inbox.usage([line("e1")])
    bad = os.fsencode(str(usage_dir(inbox))) + b"/bad\xff.jsonl"
    with open(bad, "wb") as f:
        f.write(line("e2").encode() + b"\n")
    report = inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert rows(con, "select event_id from rated_events") == [("e1",)]
    name, reason = one(con, "select source_file, reason from rejected_files")
    assert name.endswith("/bad\\xff.jsonl") and reason == "unreadable_file"
    assert any("bad\\xff.jsonl" in w for w in report.warnings)


def test_a_hard_link_to_a_file_outside_the_inbox_is_turned_away_unread(inbox, tmp_path):
    secret = tmp_path / "secret.jsonl"
    secret.write_text('{"password": "SECRET-LINE"}\n', encoding="utf-8")
    inbox.orders([BASIC])
    inbox.usage([line("e1")])
    os.link(secret, usage_dir(inbox) / "h.jsonl")
    inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert rows(con, "select reason, detail from rejected_files") == [
        ("not_a_regular_file", "hard link")
    ]
    assert one(con, "select count(*) from rejected_events where raw like '%SECRET%'") == 0


def test_a_file_that_vanishes_after_it_was_listed_is_unreadable_and_the_rest_billed(
    inbox, monkeypatch
):
    inbox.orders([BASIC])
    inbox.usage([line("e1")], name="a.jsonl")
    gone = inbox.usage([line("e2")], name="b.jsonl")
    real = ingest_module.file_digest

    def digest_then_vanish(path, *keep):
        result = real(path, *keep)
        if path == gone:
            path.unlink()  # a sender's clean-up racing the run
        return result

    monkeypatch.setattr(ingest_module, "file_digest", digest_then_vanish)
    inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert rows(con, "select event_id from rated_events") == [("e1",)]
    assert rows(con, "select source_file, reason from rejected_files") == [
        (str(gone), "unreadable_file")
    ]


@pytest.mark.parametrize("kept", [True, False])
def test_a_small_file_removed_once_it_was_digested_is_billed_from_the_bytes_read_or_turned_away(
    inbox, monkeypatch, kept
):
    """A small usage file's bytes are kept from the read its digest was taken of: removed
    after that (once the inbox's new files are known), it is billed from those bytes, its
    content and digest agreeing. Without them (KEEP_BYTES spent) its lines are read again
    and, the file gone, it is turned away whole; the rest of the inbox billed either way."""
    if not kept:
        monkeypatch.setattr(ingest_module, "KEEP_BYTES", 0)
    inbox.orders([BASIC])
    inbox.usage([line("e1")], name="a.jsonl")
    gone = inbox.usage([line("e2")], name="b.jsonl")
    sha = hashlib.sha256(gone.read_bytes()).hexdigest()
    real = ingest_module._new_files

    def then_removed(con, paths, *args, **kwargs):
        fresh = real(con, paths, *args, **kwargs)
        if gone in paths:
            gone.unlink()
        return fresh

    monkeypatch.setattr(ingest_module, "_new_files", then_removed)
    inbox.bill("2026-11-26")
    con = inbox.warehouse()
    billed = rows(con, "select event_id from rated_events order by 1")
    turned_away = rows(con, "select source_file, reason from rejected_files")
    registered = one(con, f"select count(*) from ingested_files where sha256 = '{sha}'")
    if kept:
        assert (billed, turned_away, registered) == ([("e1",), ("e2",)], [], 1)
    else:
        assert (billed, turned_away) == ([("e1",)], [(str(gone), "unreadable_file")])


def test_a_small_gzip_holding_many_lines_goes_batch_by_batch(inbox, monkeypatch):
    """A file counts as small by its size on disk; one that unpacks past a group's bytes is
    read in bounded batches instead (a gzip bomb cannot take the run's memory)."""
    monkeypatch.setattr(ingest_module, "GROUP_BYTES", 2_000)
    monkeypatch.setattr(ingest_module, "CHUNK_BYTES", 1_000)
    inbox.orders([BASIC])
    inbox.usage([line("a1")], name="a.jsonl")
    packed = usage_dir(inbox) / "b.jsonl.gz"
    packed.write_bytes(gzip.compress(b"".join(line(f"b{i}").encode() + b"\n" for i in range(80))))
    inbox.usage([line("c1")], name="c.jsonl")
    assert packed.stat().st_size < 2_000  # small on disk, ~12 KB of lines
    batches = []
    real = ingest_module.UsageIngest.large_file

    def spy(self, f, *args, **kwargs):
        batches.append(f.path.name)
        return real(self, f, *args, **kwargs)

    monkeypatch.setattr(ingest_module.UsageIngest, "large_file", spy)
    inbox.bill("2026-11-26")
    assert batches == ["b.jsonl.gz"]
    con = inbox.warehouse()
    assert one(con, "select count(*) from rated_events") == 82
    # files in path order: the group before the large file, then it, then the rest
    keys = dict(rows(con, "select event_id, event_key from events"))
    assert keys["a1"] < keys["b0"] < keys["b79"] < keys["c1"]


def test_a_file_that_is_neither_orders_nor_usage_is_named_in_the_warnings(inbox):
    inbox.orders([BASIC])
    inbox.usage([line("e1")])
    (usage_dir(inbox) / "2026-11-26.json").write_text(line("e2") + "\n", encoding="utf-8")
    report = inbox.bill("2026-11-26")
    assert [w for w in report.warnings if "ignored" in w] == [
        f"{usage_dir(inbox) / '2026-11-26.json'} ignored: not an orders file "
        "(inbox/orders/*.csv) nor a usage file (inbox/usage/**/*.jsonl[.gz]); "
        "rename it to have it read"
    ]


def test_a_usage_folder_the_run_cannot_list_is_turned_away_and_the_rest_billed(inbox, monkeypatch):
    """A sub-folder of inbox/usage the run may not list (its permissions) was skipped with
    no trace; it is now a rejected file, named, and the other files are billed. (Simulated:
    the tests run as root, whom permissions do not stop.)"""
    import tasks.inbox_files as inbox_files

    inbox.orders([BASIC])
    inbox.usage([line("e1")])
    hidden = usage_dir(inbox) / "hourly"
    hidden.mkdir()
    (hidden / "h.jsonl").write_text(line("e2") + "\n", encoding="utf-8")
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path) == hidden:
            raise PermissionError(13, "Permission denied", str(hidden))
        return real_scandir(path)

    monkeypatch.setattr(inbox_files.os, "scandir", scandir)
    billed_e1_and_turned_away(inbox, hidden, "folder cannot be listed: Permission denied")


def billed_e1_and_turned_away(inbox: Inbox, path: Path, detail: str) -> None:
    """Billed: the event e1 alone, and `path` in rejected_files as unreadable_file."""
    report = inbox.bill("2026-11-26")
    wh = inbox.warehouse()
    assert rows(wh, "select event_id from rated_events") == [("e1",)]
    assert rows(wh, "select source_file, reason, detail from rejected_files") == [
        (str(path), "unreadable_file", detail)
    ]
    assert report.ingest.rejected_files == [(str(path), "unreadable_file")]


def _nested(top: Path, names: list[str], file_name: str, text: str) -> int:
    """A file under folders `names` made one inside the other from `top` (by descriptor: its
    path may be longer than the system takes whole); its path's length in bytes."""
    fd = os.open(top, os.O_RDONLY)
    try:
        for name in names:
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, dir_fd=fd)
            inner = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
        made = os.open(file_name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(made, text.encode())
        os.close(made)
    finally:
        os.close(fd)
    return len(os.fsencode(top)) + sum(len(n) + 1 for n in names) + 1 + len(file_name)


def remove_nested(top: Path, depth: int) -> None:
    """Everything under `top`'s folder chain "d/d/..." `depth` deep taken out, deepest first
    (pytest's clean-up of old temporary folders recurses: it would fail on these)."""
    deepest = top.joinpath(*["d"] * depth)
    for entry in deepest.iterdir():
        entry.unlink()
    for folder in [deepest, *deepest.parents][:depth]:
        folder.rmdir()


def test_usage_folders_a_thousand_deep_are_listed_and_billed(inbox):
    """Folders inside folders ~1,000 deep (a generated layout gone wrong; the path still
    shorter than the system's limit) stopped every run (RecursionError in Python's os.walk):
    the inbox is now listed in a loop, and the deep file is billed with the others."""
    inbox.orders([BASIC])
    inbox.usage([line("e1")])
    length = _nested(usage_dir(inbox), ["d"] * 1000, "deep.jsonl", line("deep1") + "\n")
    assert length < os.pathconf("/", "PC_PATH_MAX")
    try:
        report = inbox.bill("2026-11-26")
        wh = inbox.warehouse()
        assert rows(wh, "select event_id from rated_events order by 1") == [("deep1",), ("e1",)]
        assert report.ingest.rejected_files == []
    finally:
        remove_nested(usage_dir(inbox), 1000)


def test_a_file_whose_path_is_too_long_to_look_at_is_turned_away_and_the_rest_billed(inbox):
    """A usage file whose whole path is longer than the system takes (PATH_MAX, 4,096 bytes
    here) cannot be looked at by its path: it stopped the run (OSError: File name too long);
    it is now `unreadable_file`, named, and the rest billed. At the limit, one byte short,
    the file is billed."""
    inbox.orders([BASIC])
    inbox.usage([line("e1")])
    most = os.pathconf("/", "PC_PATH_MAX") - 1  # (the limit counts the ending NUL)
    top = usage_dir(inbox)
    room = most - len(os.fsencode(top)) - len("/x.jsonl")
    folders = ["d" * 200] * (room // 201) + ["e" * (room % 201 - 1)]
    at = _nested(top, folders, "x.jsonl", line("at_limit") + "\n")
    assert at == most
    past = _nested(top, ["d" * 200] * (room // 201) + ["f" * (room % 201 - 1)], "xy.jsonl", "")
    assert past == most + 1
    report = inbox.bill("2026-11-26")
    wh = inbox.warehouse()
    assert rows(wh, "select event_id from rated_events order by 1") == [("at_limit",), ("e1",)]
    [(name, reason, detail)] = rows(wh, "select source_file, reason, detail from rejected_files")
    assert name.endswith("/xy.jsonl") and len(os.fsencode(name)) == past
    assert (reason, detail) == ("unreadable_file", "cannot be looked at: File name too long")
    assert report.ingest.rejected_files == [(name, "unreadable_file")]


def test_a_file_gone_between_its_folders_listing_and_its_look_is_turned_away(inbox, monkeypatch):
    """A sender's clean-up removing a file after its folder was listed and before the run
    looked at it stopped the run (FileNotFoundError); it is now `unreadable_file`, named,
    and the rest billed."""
    import tasks.inbox_files as inbox_files

    inbox.orders([BASIC])
    inbox.usage([line("e1")])
    gone = usage_dir(inbox) / "b.jsonl"
    gone.write_text(line("e2") + "\n", encoding="utf-8")
    real_scandir = os.scandir

    class Listed:
        def __init__(self, path):
            self.entries = list(real_scandir(path))
            if Path(path) == gone.parent and gone.exists():  # (the listing's, not another's)
                gone.unlink()

        def __enter__(self):
            return iter(self.entries)

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(inbox_files.os, "scandir", Listed)
    billed_e1_and_turned_away(inbox, gone, "cannot be looked at: No such file or directory")


def test_a_file_named_like_an_inbox_folder_is_turned_away(inbox):
    inbox.usage([line("e1")])
    (inbox.root / "inbox" / "orders").write_text("not a folder", encoding="utf-8")
    inbox.bill("2026-11-26")
    assert rows(inbox.warehouse(), "select reason, detail from rejected_files") == [
        ("unreadable_file", "not a folder")
    ]


# ---------------------------------------------------------------- lines and rows


def test_json_may_start_with_a_tab_and_utc_may_be_a_lowercase_z(inbox):
    inbox.orders([BASIC])
    inbox.usage(["\t" + line("tab"), line("z", occurred_at="2026-11-26T03:00:00z")])
    inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert rows(con, "select event_id from rated_events order by 1") == [("tab",), ("z",)]


def write_orders(inbox: Inbox, text: bytes) -> None:
    path = inbox.root / "inbox" / "orders" / "o.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text)


HEADER = b"order_id,customer_id,product,term_months,amount_cny,purchased_at\n"


def test_order_ids_are_kept_as_sent_never_trimmed(inbox):
    write_orders(
        inbox,
        HEADER
        + b"o1, c11 ,basic,1,30,2026-11-26T10:00:00+08:00\n"
        + b"o2,c12\x1f,basic,1,30,2026-11-26T10:00:00+08:00\n"
        + b"o3,c13, basic ,1, 30 ,2026-11-26T10:00:00+08:00\n",
    )
    inbox.usage([line("e1", customer_id=" c11 ")])
    inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert rows(con, "select customer_id from orders order by 1") == [(" c11 ",), ("c13",)]
    assert rows(con, "select line_no, reason from rejected_orders") == [(3, "bad_id")]
    assert rows(con, "select customer_id from rated_events") == [(" c11 ",)]


def test_an_orders_file_without_a_header_loses_no_row(inbox):
    write_orders(
        inbox,
        b"o1,c1,basic,1,30,2026-11-26T10:00:00+08:00\no2,c2,basic,1,30,2026-11-26T10:00:00+08:00\n",
    )
    inbox.usage([line("e1")])
    inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert rows(con, "select line_no, reason from rejected_orders order by 1") == [
        (1, "malformed_row"),
        (2, "malformed_row"),
    ]


def test_a_header_naming_a_field_twice_makes_every_row_malformed(inbox):
    write_orders(
        inbox,
        b"order_id,customer_id,product,term_months,amount_cny,purchased_at,customer_id\n"
        + b"o1,c1,basic,1,30,2026-11-26T10:00:00+08:00,c9\n",
    )
    inbox.usage([line("e1")])
    inbox.bill("2026-11-26")
    assert rows(inbox.warehouse(), "select line_no, reason from rejected_orders order by 1") == [
        (1, "malformed_row"),
        (2, "malformed_row"),
    ]


def test_an_amount_in_fullwidth_digits_is_a_bad_amount(inbox):
    write_orders(inbox, HEADER + "o1,c1,basic,1,３０,2026-11-26T10:00:00+08:00\n".encode())
    inbox.usage([line("e1")])
    inbox.bill("2026-11-26")
    assert rows(inbox.warehouse(), "select reason from rejected_orders") == [("bad_amount",)]


# ---------------------------------------------------------------- operator typos


def test_a_through_in_a_past_year_does_not_widen_the_late_window(inbox):
    inbox.settings_overrides = {"max_late_days": 3}
    inbox.orders([BASIC])
    inbox.usage([line("e1")])
    inbox.bill("2026-11-26")
    inbox.usage([line("old", occurred_at="2025-06-01T10:00:00+08:00")])
    report = inbox.bill("2025-05-20")  # the year mistyped
    assert [d["day"] for d in report.days] == []  # the old line is too late: nothing re-billed
    assert rows(inbox.warehouse(), "select reason from rejected_events") == [("too_late",)]


@pytest.mark.parametrize(
    ("name", "ok", "past"),
    [
        ("shards", 1024, 1025),
        ("max_late_days", 3650, 3651),
        ("max_history_days", 3650, 3651),
        ("hot_days", 3650, 3651),
        ("keep_old_files_seconds", 30 * 86400, 30 * 86400 + 1),
    ],
)
def test_counts_are_refused_past_their_limit_at_once(tmp_path, name, ok, past):
    assert getattr(Settings(data_dir=tmp_path, **{name: ok}), name) == ok
    with pytest.raises(SettingError, match=f"{name} must be a whole number from 0 to {ok}"):
        Settings(data_dir=tmp_path, **{name: past})


def test_a_count_past_its_limit_in_the_environment_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("ADBILL_SHARDS", "10000000")
    with pytest.raises(SettingError, match="ADBILL_SHARDS='10000000'"):
        Settings(data_dir=tmp_path)


def test_a_through_before_2000_is_refused(tmp_path):
    (tmp_path / "inbox").mkdir()
    check_run(Settings(data_dir=tmp_path), date(2000, 1, 1))
    with pytest.raises(RunRefused, match="before 2000-01-01"):
        check_run(Settings(data_dir=tmp_path), date(1999, 12, 31))


@pytest.mark.parametrize(
    "where", ["inbox/usage/wh.jsonl", "inbox/orders/wh.csv", "state/adbill.duckdb"]
)
def test_the_published_warehouse_may_not_lie_in_the_inbox_or_the_working_state(tmp_path, where):
    with pytest.raises(SettingError, match="put the published warehouse elsewhere"):
        Settings(data_dir=tmp_path, db=tmp_path / where)
    assert (
        Settings(data_dir=tmp_path, db=tmp_path / "published" / "wh.duckdb").db.name == "wh.duckdb"
    )


@pytest.mark.parametrize("gz", [True, False])
def test_lines_holding_millions_of_json_values_are_parsed_one_at_a_time_and_billed(
    inbox, monkeypatch, gz
):
    """DuckDB parses the JSON lines of a vector together, ~16 bytes of memory for each value
    they hold: a few lines of a few MB with long arrays in an ignored extra field (a 26 KB
    gzip) ran the run out of memory, every run. A long line is now scanned on its own, in
    the check and in the reasons' second parse alike (here at a quarter of the memory:
    lines of ~1 MB, 500,000 values each, 40 good and 20 bad)."""
    import tasks.db as db

    monkeypatch.setattr(db, "MEMORY_LIMIT", "256MB")
    trace = "[" + "0," * 499_999 + "0]"

    def long(event_id: str, **changes) -> str:
        return line(event_id, **changes)[:-1] + f', "trace": {trace}}}'

    bad = [long(f"bad{i}", quantity="5") for i in range(20)]
    lines = [line("good")] + [long(f"big{i}") for i in range(40)] + bad
    inbox.orders([BASIC])
    inbox.usage(lines, gz=gz)
    inbox.bill("2026-11-26")
    wh = inbox.warehouse()
    assert one(wh, "select count(*) from rated_events") == 41
    assert rows(wh, "select line_no, reason from rejected_events order by 1") == [
        (n, "wrong_type:quantity") for n in range(42, 62)
    ]


def test_a_lone_surrogate_escape_is_bad_id_in_an_id_and_ignored_in_an_extra_field(inbox):
    """`"\\ud83d"` alone (a producer cutting text by UTF-16 units) is allowed by JSON's
    grammar and refused by DuckDB's parser: the whole line was malformed_json. In an ignored
    field the line is now billed; in an id it is bad_id (not valid Unicode, §3); a pair, or
    an escaped backslash before `ud800`, is what it was."""
    inbox.orders([BASIC])
    extra = line("note")[:-1] + ', "note": "cut emoji \\ud83d"}'
    in_id = line("id").replace('"id"', '"id\\ud800"', 1)
    pair = line("pair")[:-1] + ', "note": "\\ud83d\\ude00 \\\\ud800"}'
    key = line("key")[:-1] + ', "k\\udc00": 1}'
    broken = line("broken")[:-1] + ', "note": "\\ud83d}'
    inbox.usage([extra, in_id, pair, key, broken, line("plain")])
    inbox.bill("2026-11-26")
    wh = inbox.warehouse()
    assert rows(wh, "select event_id from rated_events order by 1") == [
        ("key",),
        ("note",),
        ("pair",),
        ("plain",),
    ]
    assert rows(wh, "select line_no, reason from rejected_events order by 1") == [
        (2, "bad_id"),
        (5, "malformed_json"),
    ]


def test_a_trailing_comma_is_malformed_json_wherever_it_stands_and_commas_in_strings_pass(
    inbox,
):
    """DuckDB's parser passes a comma before a closing bracket; JSON's grammar does not
    (§3: malformed JSON). Text that only looks like one, inside a string, is no such comma."""
    inbox.orders([BASIC])
    top = line("top")[:-1] + ",}"
    spaced = line("spaced")[:-1] + ", \t }"
    in_array = line("array")[:-1] + ', "extra": [1, 2,]}'
    in_object = line("object")[:-1] + ', "extra": {"a": 1 ,}}'
    in_string = line("string")[:-1] + ', "note": "a,} b, ] c,]"}'
    with_surrogate = line("cut")[:-1] + ', "note": "\\ud83d",}'
    escaped_ok = line("cut-ok")[:-1] + ', "note": "\\ud83d ,]"}'
    lines = [top, spaced, in_array, in_object, in_string, with_surrogate, escaped_ok, line("p")]
    inbox.usage(lines)
    inbox.bill("2026-11-26")
    wh = inbox.warehouse()
    assert rows(wh, "select event_id from rated_events order by 1") == [
        ("cut-ok",),
        ("p",),
        ("string",),
    ]
    assert rows(wh, "select line_no, reason from rejected_events order by 1") == [
        (n, "malformed_json") for n in (1, 2, 3, 4, 6)
    ]


def test_under_a_header_with_an_extra_column_only_rows_as_wide_as_it_are_read(inbox):
    """A row of six fields under a seven-column header was read shifted by a column
    (`missing_field:purchased_at`): it is malformed_row, as a row of seven under six is."""
    write_orders(
        inbox,
        b"order_id,note,customer_id,product,term_months,amount_cny,purchased_at\n"
        + b"o1,paid by card,c1,basic,1,30,2026-11-26T10:00:00+08:00\n"
        + b"o2,c2,basic,1,30,2026-11-26T10:00:00+08:00\n"
        + b"o3,x,c3,basic,1,30,2026-11-26T10:00:00+08:00,extra\n",
    )
    inbox.usage([line("e1")])
    inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert rows(con, "select order_id, customer_id from orders") == [("o1", "c1")]
    assert rows(con, "select line_no, reason from rejected_orders order by 1") == [
        (3, "malformed_row"),
        (4, "malformed_row"),
    ]
