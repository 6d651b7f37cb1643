"""The compiled scanner (tasks/fast_lines.py) and the exact path (sql/extract_events.sql)
agree: every line the scanner reads is clean by the exact path, with the same values, so
reading it there loses no reason and changes no event (issue 16); and the plain form
producers write is read by the scanner, so the fast path is taken."""

from __future__ import annotations

import json
import threading

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.fast_lines import MIN_USAGE_BYTES, OUT_FIELDS, scan_lines
from tasks.inbox_files import _lines_table
from tasks.ingest_usage import keyed
from tests.test_fuzz_inbox import usage_lines
from tests.test_validate import extracted

PLAIN = {
    "event_id": "e-1",
    "customer_id": "c1",
    "account_id": "c1-a1",
    "function": "copy_generation",
    "quantity": "3",
    "status": "succeeded",
    "occurred_at": "2026-11-26T10:00:00.170+08:00",
}


def render(fields: list[tuple[str, str]], comma: str = ",", colon: str = ":") -> bytes:
    """A line from (key, value as written) pairs: text values are JSON already."""
    return ("{" + comma.join(f"{json.dumps(k)}{colon}{v}" for k, v in fields) + "}").encode()


def plain(**changes: str) -> bytes:
    """The plain line with fields changed (a value as written: `'"x"'` or `'5'`)."""
    values = {k: (v if k == "quantity" else json.dumps(v)) for k, v in PLAIN.items()}
    values.update(changes)
    return render(list(values.items()))


def compare(lines: list[bytes]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(scanned, facts) of the lines; asserts that every scanned line is clean by the exact
    path with the same values."""
    rows = keyed(_lines_table(b"\n".join(lines), 1), 1)
    scanned, rest = scan_lines(rows)
    assert scanned.num_rows + rest.num_rows == rows.num_rows
    assert set(rest["line_no"].to_pylist()).isdisjoint(scanned["line_no"].to_pylist())
    facts = extracted(lines)
    columns = ["line_no", *OUT_FIELDS, "quantity_micro", "occurred_at_ts"]
    fast = pl.from_arrow(scanned).select(*columns).sort("line_no")
    exact = facts.filter(pl.col("line_no").is_in(fast["line_no"].to_list())).sort("line_no")
    assert exact["clean"].all(), exact.filter(~pl.col("clean"))
    exact = exact.select(
        *["line_no", *OUT_FIELDS, "quantity_micro"],
        pl.col("occurred_at_ts").dt.convert_time_zone("UTC"),
    )
    assert fast.to_dicts() == exact.to_dicts()
    return fast, facts


# the plain form and the ways a producer (or an attacker) strays from it
TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\n\r"), min_size=0, max_size=6)
IDS = st.one_of(
    st.sampled_from(["c1", "c1-a1", "e-7", "客户", "Zoë", "=1+2", "x" * 200, "x" * 201, ""]),
    TEXT,
    st.builds(lambda n, c: c * n, st.integers(195, 205), st.sampled_from(["a", "é", "客"])),
)
QUANTITIES = st.one_of(
    st.integers(-2, 10**10).map(str),
    st.builds(
        lambda i, f: f"{i}.{f}",
        st.integers(0, 10**9 + 1),
        st.text("0123456789", min_size=0, max_size=9),
    ),
    st.sampled_from(
        [
            "0",
            "00",
            "01",
            "0.0",
            "1e3",
            "1E-2",
            "-1",
            "999999999.999999",
            "999999999.9999990",
            "1000000000",
            "0.000001",
            "0.0000001",
            "1.5000000",
            '"5"',
            "null",
            "true",
            "NaN",
            "1.",
            ".5",
        ]
    ),
)


@st.composite
def timestamps(draw) -> str:
    year = draw(st.sampled_from([1999, 2000, 2024, 2026, 2099, 2100]))
    month = draw(st.integers(0, 13))
    day = draw(st.integers(0, 32))
    hour, minute, second = (
        draw(st.integers(0, 24)),
        draw(st.integers(0, 60)),
        draw(st.integers(0, 61)),
    )
    sep = draw(st.sampled_from(["T", "T", "t", " "]))
    fraction = draw(st.sampled_from(["", "", ".1", ".170", ".123456", ".1234567", "."]))
    offset = draw(
        st.one_of(
            st.sampled_from(["Z", "Z", "z", "", "+0800", "+08"]),
            st.builds(
                lambda s, h, m: f"{s}{h:02d}:{m:02d}",
                st.sampled_from("+-"),
                st.integers(0, 15),
                st.sampled_from([0, 0, 30, 45, 59, 60]),
            ),
        )
    )
    seconds = draw(st.sampled_from([f":{second:02d}", f":{second:02d}", ""]))
    return (
        f"{year:04d}-{month:02d}-{day:02d}{sep}{hour:02d}:{minute:02d}{seconds}{fraction}{offset}"
    )


def text_value(draw, value: str) -> str:
    return json.dumps(value, ensure_ascii=draw(st.sampled_from([False, False, True])))


GOOD_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"], exclude_characters='"\\'),
    min_size=1,
    max_size=12,
)


@st.composite
def good_timestamps(draw) -> str:
    at = f"{draw(st.integers(2000, 2099)):04d}-{draw(st.integers(1, 12)):02d}-"
    at += f"{draw(st.integers(1, 28)):02d}T{draw(st.integers(0, 23)):02d}:"
    at += f"{draw(st.integers(0, 59)):02d}:{draw(st.integers(0, 59)):02d}"
    at += draw(st.sampled_from(["", ".5", ".170", ".123456"]))
    hours = draw(st.integers(0, 14))
    minutes = 0 if hours == 14 else draw(st.sampled_from([0, 30, 45, 59]))
    return at + draw(
        st.sampled_from(["Z", f"+{hours:02d}:{minutes:02d}", f"-{hours:02d}:{minutes:02d}"])
    )


GOOD_QUANTITIES = st.one_of(
    st.integers(1, 999_999_999).map(str),
    st.builds(
        lambda i, f, z: f"{i}.{f:06d}".rstrip("0") + "0" * z if f else f"{i}.{'0' * (z + 1)}",
        st.integers(0, 999_999_999),
        st.integers(1, 999_999),
        st.integers(0, 3),
    ),
)


@st.composite
def plainish_lines(draw) -> bytes:
    """A plain line (values within every limit, drawn), then none, one or two of the ways
    a line strays from the plain form or breaks a rule."""
    values = {
        "event_id": json.dumps(draw(GOOD_TEXT), ensure_ascii=False),
        "customer_id": json.dumps(draw(GOOD_TEXT), ensure_ascii=False),
        "account_id": json.dumps(draw(GOOD_TEXT), ensure_ascii=False),
        "function": json.dumps(draw(GOOD_TEXT), ensure_ascii=False),
        "quantity": draw(GOOD_QUANTITIES),
        "status": json.dumps(draw(st.sampled_from(["succeeded", "failed"]))),
        "occurred_at": json.dumps(draw(good_timestamps())),
    }
    wild = {
        "event_id": IDS,
        "customer_id": IDS,
        "account_id": IDS,
        "function": TEXT,
        "status": st.sampled_from(["succeeded", "failed", "Failed", ""]),
        "occurred_at": timestamps(),
    }
    fields = list(values.items())
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2]))):
        change = draw(
            st.sampled_from(["value", "value", "value", "drop", "extra", "twice", "number"])
        )
        if change == "value":
            k = draw(st.sampled_from(list(values)))
            v = draw(QUANTITIES) if k == "quantity" else text_value(draw, draw(wild[k]))
            fields = [(key, v if key == k else old) for key, old in fields]
        elif change == "drop":
            fields = fields[1:]
        elif change == "extra":
            fields = [*fields, ("note", json.dumps(draw(TEXT)))]
        elif change == "twice":
            fields = [*fields, fields[0]]
        elif change == "number":  # a text field written as a number
            fields = [(fields[0][0], "5"), *fields[1:]]
    fields = draw(st.permutations(fields))
    comma = draw(st.sampled_from([",", ",", ",", ", ", " , ", ",\t", ",,"]))
    colon = draw(st.sampled_from([":", ":", ":", ": ", " :"]))
    line = render(fields, comma, colon)
    return draw(
        st.sampled_from([line, line, line, line, b" " + line, line + b" ", line + b",", line[:-1]])
    )


@settings(max_examples=150, deadline=None, database=None)
@given(
    st.lists(st.one_of(plainish_lines(), plainish_lines(), usage_lines()), min_size=1, max_size=25)
)
def test_every_line_the_scanner_reads_is_clean_with_the_values_of_the_exact_path(lines):
    compare(lines)


def test_the_plain_form_is_read_by_the_scanner_in_any_field_order_and_spacing():
    fields = list(plain_fields().items())
    lines = [
        render(fields),
        render(fields, ", ", ": "),
        render(list(reversed(fields))),
        b" " + render(fields) + b"\t",
        plain(quantity="12.5"),
        plain(quantity="0.000001"),
        plain(quantity="999999999.999999"),
        plain(quantity="2.50000000"),
        plain(status='"failed"'),
        plain(occurred_at='"2026-11-26T02:00:00Z"'),
        plain(occurred_at='"2024-02-29T23:59:59.123456-14:00"'),
        plain(customer_id='"客户/north=1+2"'),
    ]
    fast, _ = compare(lines)
    assert fast["line_no"].to_list() == list(range(1, len(lines) + 1))
    assert fast["quantity_micro"].to_list()[4:8] == [12_500_000, 1, 999_999_999_999_999, 2_500_000]


def plain_fields() -> dict[str, str]:
    return {k: (v if k == "quantity" else json.dumps(v)) for k, v in PLAIN.items()}


# each limit of §3 at it (read by the scanner) and just past it (left to the exact path,
# which rejects it: test_limits.py)
@pytest.mark.parametrize(
    ("at", "past"),
    [
        ({"quantity": "999999999.999999"}, {"quantity": "1000000000"}),
        ({"quantity": "0.000001"}, {"quantity": "0.0000001"}),
        ({"quantity": "1.000000"}, {"quantity": "1.0000001"}),
        ({"quantity": "0.000001"}, {"quantity": "0"}),
        ({"event_id": json.dumps("e" * 200)}, {"event_id": json.dumps("e" * 201)}),
        (
            {"account_id": json.dumps("客" * 66, ensure_ascii=False)},
            {"account_id": json.dumps("客" * 67, ensure_ascii=False)},
        ),
        ({"customer_id": json.dumps("c")}, {"customer_id": json.dumps("")}),
        (
            {"occurred_at": '"2099-12-31T23:59:59+08:00"'},
            {"occurred_at": '"2100-01-01T00:00:00+08:00"'},
        ),
        ({"occurred_at": '"2000-01-01T00:00:00Z"'}, {"occurred_at": '"1999-12-31T23:59:59Z"'}),
        (
            {"occurred_at": '"2026-11-26T10:00:00+14:00"'},
            {"occurred_at": '"2026-11-26T10:00:00+14:01"'},
        ),
        (
            {"occurred_at": '"2026-11-26T10:00:00-13:59"'},
            {"occurred_at": '"2026-11-26T10:00:00-15:00"'},
        ),
        ({"occurred_at": '"2026-02-28T10:00:00Z"'}, {"occurred_at": '"2026-02-29T10:00:00Z"'}),
        (
            {"occurred_at": '"2026-11-26T10:00:00.123456Z"'},
            {"occurred_at": '"2026-11-26T10:00:00.1234567Z"'},
        ),
    ],
)
def test_each_limit_is_read_at_it_and_left_to_the_exact_path_past_it(at, past):
    fast, facts = compare([plain(**at), plain(**past)])
    assert fast["line_no"].to_list() == [1]
    assert facts["clean"].to_list() in ([True, False], [True, True])


def test_what_the_scanner_leaves_is_every_line_not_of_the_plain_form():
    lines = [
        plain(event_id='"e\\u0031"'),  # an escape
        plain(quantity="3e0"),  # an exponent
        plain(quantity='"3"'),  # a number as text
        plain(customer_id="5"),  # text as a number
        plain(status='"ok"'),
        plain(occurred_at='"2026-11-26t10:00:00Z"'),  # a lowercase t: clean, the exact path's
        plain(occurred_at='"2026-11-26T10:00:00"'),  # no offset
        render([*plain_fields().items(), ("extra", "1")]),  # an extra field: clean too
        render([*plain_fields().items(), ("quantity", "4")]),  # a field twice
        render(list(plain_fields().items())[1:]),  # a field missing
        plain() + b",",
        b"",
        b"{}",
    ]
    fast, _ = compare(lines)
    assert fast.height == 0


def test_a_scanner_that_cannot_load_leaves_every_line_to_the_exact_path(tmp_path, monkeypatch):
    from tasks import fast_kernels, fast_lines
    from tests.conftest import Inbox, event, order, rows

    def broken() -> None:
        raise RuntimeError("no LLVM here")

    monkeypatch.setenv("ADBILL_TODAY", "2026-11-27")
    monkeypatch.setenv("ADBILL_SCAN_MIN_LINES", "1")
    monkeypatch.setattr(fast_lines, "_failed", None)
    monkeypatch.setattr(fast_lines, "_loaded", None)
    monkeypatch.setattr(fast_kernels, "load", broken)
    inbox = Inbox(tmp_path / "data")
    inbox.orders([order("o1", "c1", "basic", 1, "30", "2026-11-26T10:00:00+08:00")])
    at = "2026-11-26T11:00:00+08:00"
    inbox.usage(
        [event("e1", "c1", "copy_generation", 2, at), event("e2", "c1", "copy_generation", "2", at)]
    )
    inbox.bill("2026-11-26")
    con = inbox.warehouse()
    assert rows(con, "select event_id, credits from events") == [("e1", 2)]
    assert rows(con, "select reason from rejected_events") == [("wrong_type:quantity",)]
    assert fast_lines._failed == "RuntimeError: no LLVM here"
    assert not fast_lines.takes(10**9) and not fast_lines.start(10**12)


@pytest.mark.parametrize(
    ("value", "usage_bytes", "batch", "scanned"),
    [
        (None, MIN_USAGE_BYTES - 1, 10**6, False),  # a day too small to pay for loading Numba
        (None, MIN_USAGE_BYTES, 99_999, False),  # large enough, but the batch is not
        (None, MIN_USAGE_BYTES, 100_000, True),
        ("1", 0, 1, True),  # the tests' knob
        ("lots", 0, 10**6, False),  # a typo in it is ignored, not a crash
        ("\u00b2", 0, 10**6, False),  # (a superscript 2: a digit to str.isdigit, not to int)
        ("\uff11", 0, 10**6, False),  # (a fullwidth 1)
    ],
)
def test_the_scanner_is_taken_from_its_thresholds_on(
    monkeypatch, value, usage_bytes, batch, scanned
):
    from tasks import fast_lines

    if value is None:
        monkeypatch.delenv("ADBILL_SCAN_MIN_LINES", raising=False)
    else:
        monkeypatch.setenv("ADBILL_SCAN_MIN_LINES", value)
    monkeypatch.setattr(fast_lines, "_warming", threading.Thread())  # (no warm-up here)
    assert (fast_lines.start(usage_bytes) and fast_lines.takes(batch)) is scanned


def test_a_day_billed_with_the_scanner_is_the_day_billed_without_it(tmp_path, monkeypatch):
    """Row for row: the events (with their line numbers and credits), the rejects and the
    ledger of the same inbox, every line scanned where it can be, and none."""
    from tests.conftest import Inbox, event, order, rows

    monkeypatch.setenv("ADBILL_TODAY", "2026-11-27")
    at = "2026-11-26T11:00:00+08:00"
    lines = [event(f"g{i}", ("c1", "c2")[i % 2], "copy_generation", 1 + i, at) for i in range(9)]
    lines += [
        event("g9", "c1", "custom_avatar", 8, "2026-11-26T20:00:00Z"),
        event("r1", "c1", "performance_report", 1, at),  # not entitled (enterprise only)
        event("g10", "c9", "copy_generation", 1, at),  # unknown customer
        event("g2", "c2", "copy_generation", 4, at),  # a repeat of g2 with other content
        event("g3", "c2", "copy_generation", 4, at),  # an exact repeat of g3: counted
    ]
    figures = []
    for scanned in ("1", None):
        if scanned:
            monkeypatch.setenv("ADBILL_SCAN_MIN_LINES", scanned)
        else:
            monkeypatch.delenv("ADBILL_SCAN_MIN_LINES")
        inbox = Inbox(tmp_path / f"data-{scanned}")
        inbox.orders(
            [
                order("o1", "c1", "basic", 1, "30", "2026-11-26T09:00:00+08:00"),
                order("o2", "c2", "package_100", None, "100", "2026-11-26T09:30:00+08:00"),
            ]
        )
        inbox.usage(lines, name="all-plain.jsonl")  # one batch, every line plain
        inbox.bill("2026-11-26")
        con = inbox.warehouse()
        figures.append(
            (
                rows(con, "select * exclude (file_id, event_key) from events order by line_no"),
                rows(con, "select line_no, raw, reason from rejected_events order by line_no"),
                rows(con, "select customer_id, event_id, kind, credits from ledger order by all"),
            )
        )
        con.close()
    assert figures[0] == figures[1]
    assert len(figures[0][0]) == 10
    assert [r[2] for r in figures[0][1]] == [
        "not_entitled",
        "unknown_customer",
        "duplicate_conflict",
    ]
