"""The row schemas (Pandera) and the one-expression `clean` tests agree (sql/extract_events.sql
for usage lines, validate.ORDER_CLEAN for order rows): a line is clean exactly when Pandera
finds nothing wrong with it, so skipping Pandera for clean lines loses no reason (§3)."""

from __future__ import annotations

import csv
import io

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.db import frame, sql
from tasks.inbox_files import _lines_table
from tasks.ingest_usage import keyed, line_functions
from tasks.validate import (
    CONTROL_CHARACTER,
    EVENT_COLUMNS,
    TIMESTAMP_WITH_OFFSET,
    failing_rows,
)
from tests.test_fuzz_inbox import order_rows, usage_lines


def extracted(lines: list[bytes]):
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    line_functions(con)  # the engine's macros and Python functions
    con.register("chunk", keyed(_lines_table(b"\n".join(lines), 1), 1))
    params = {"timestamp_pattern": TIMESTAMP_WITH_OFFSET, "control": CONTROL_CHARACTER}
    return frame(con, sql("extract_events"), params)


@settings(max_examples=60, deadline=None, database=None)
@given(st.lists(usage_lines(), min_size=1, max_size=30))
def test_a_line_is_clean_exactly_when_the_row_schema_finds_nothing_wrong(lines):
    facts = extracted(lines)
    failing = set(failing_rows(facts.select(list(EVENT_COLUMNS)), "usage")["index"].to_list())
    unclean = {i for i, clean in enumerate(facts["clean"].to_list()) if not clean}
    assert unclean == failing


def test_a_good_line_is_clean_and_a_bad_one_is_not():
    good = (
        b'{"event_id": "e1", "customer_id": "c1", "account_id": "a1", "function": "f",'
        b' "quantity": 1.5, "status": "succeeded", "occurred_at": "2026-11-26T10:00:00+08:00"}'
    )
    facts = extracted([good, good.replace(b"1.5", b"1.0000001"), b"{}"])
    assert facts["clean"].to_list() == [True, False, False]


# a quantity within §3's limits, as a producer may write it: an integer, a decimal with
# trailing zeros, or a number with an exponent
def _written(micro: int, style: int, zeros: int) -> str:
    from decimal import Decimal

    value = Decimal(micro) / 1_000_000
    if style == 0 and micro % 1_000_000 == 0:
        return str(micro // 1_000_000)
    if style == 1:
        text = f"{value:f}"
        return text + "0" * zeros if "." in text else text + "." + "0" * (zeros + 1)
    digits = f"{micro}{'0' * zeros}"  # the same number as <integer>e-<6 + zeros>
    return f"{digits}e-{6 + zeros}"


@settings(max_examples=120, deadline=None, database=None)
@given(
    micro=st.one_of(
        st.integers(1, 999_999_999_999_999),
        st.integers(1, 999_999_999).map(lambda n: n * 1_000_000),
    ),
    style=st.integers(0, 2),
    zeros=st.integers(0, 12),
)
def test_a_clean_quantity_is_exactly_the_number_written(micro, style, zeros):
    """Whether written as an integer, a decimal or with an exponent, a quantity within the
    limits arrives exactly: its micro-units and its DECIMAL(18,6) value are the number's."""
    from decimal import Decimal

    q = _written(micro, style, zeros)
    line = (
        '{"event_id": "e1", "customer_id": "c1", "account_id": "a1", "function": "f", '
        f'"quantity": {q}, "status": "succeeded", "occurred_at": "2026-11-26T10:00:00+08:00"}}'
    )
    facts = extracted([line.encode()])
    assert facts["clean"].to_list() == [True], q
    assert facts["quantity_micro"].to_list() == [micro], q
    assert Decimal(str(facts["quantity"][0])) == Decimal(micro) / 1_000_000, q


_WARM_UP_SCRIPT = """
import sys
import polars as pl
from tasks import validate as V
if sys.argv[1] == "background":
    V.warm_up_in_background()  # the call below races it and must wait for it
facts = pl.DataFrame(
    {n: [None, None] for n in V.EVENT_COLUMNS},
    schema={n: c.dtype.type for n, c in V.EVENT_SCHEMA.columns.items()},
).with_columns(
    utf8_ok=pl.Series([True, False]), json_ok=pl.Series([False, True]),
)
print(V.failing_rows(facts, "usage").rows(), V._warmed_up)
"""


def test_pandera_warmed_up_on_a_thread_gives_the_same_reasons_as_a_cold_start():
    """The first validation of a process waits for the background warm-up, and answers as
    one that never had it (fresh interpreters: this one's Pandera is warm already)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]

    def answer(mode: str) -> str:
        run = [sys.executable, "-c", _WARM_UP_SCRIPT, mode]
        out = subprocess.run(run, cwd=root, capture_output=True, text=True, check=True)
        return out.stdout.strip()

    cold, warmed = answer("cold"), answer("background")
    assert cold == warmed == "[(0, 'malformed_json'), (1, 'bad_encoding')] True"


# each column's plausible values and the corners of its rules (§3 and the row schema)
ORDER_CORNERS = [
    ["o1", "", "o" * 200, "o" * 201, "a\x01b", "客户", " o1 ", "=1+2"],
    ["c1", "", "c" * 200, "c" * 201, "c\x7f", "Zoë"],
    ["basic", "package_100", "", "BASIC"],
    ["", "1", "12", "6.0", "6.000000", "6.0000000", "1.5", "1000", "abc", "01"],
    [
        "30",
        "30.00",
        "",
        "1e3",
        "-30",
        "1" * 15,
        "1" * 16,
        "30.",
        ".5",
        "1." + "0" * 18,
        "1." + "0" * 19,
    ],
    [
        "2026-11-26T08:00:00+08:00",
        "2026-11-26T08:00:00",
        "2026-11-26",
        "bad",
        "2026-13-01T00:00:00Z",
        "2099-12-31T23:59:59+14:00",
        "2100-01-01T00:00:00Z",
        "2026-11-26 08:00:00.5z",
    ],
]


@st.composite
def order_like_rows(draw) -> bytes:
    """Rows near the rules: each cell plausible or at a corner, six cells most often."""
    cells = [draw(st.sampled_from(values[:1] * len(values) + values)) for values in ORDER_CORNERS]
    n = draw(st.sampled_from([6, 6, 6, 6, 5, 7]))
    cells = (cells + ["x"])[:n]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(cells)
    return out.getvalue().encode()


@settings(max_examples=120, deadline=None, database=None)
@given(st.lists(st.one_of(order_rows(), order_like_rows(), order_like_rows()), max_size=20))
def test_an_order_row_is_clean_exactly_when_the_row_schema_finds_nothing_wrong(rows):
    """ORDER_CLEAN (one Polars expression) lets a row skip Pandera: it must pass exactly the
    rows the row schema passes, so that every other row still gets its reason."""
    import tempfile
    from pathlib import Path

    from tasks.ingest_orders import _strict_timestamps, read_order_rows
    from tasks.validate import ORDER_CLEAN, order_reasons, reject_reasons

    header = b"order_id,customer_id,product,term_months,amount_cny,purchased_at\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "o.csv"
        path.write_bytes(header + b"".join(rows))
        df = read_order_rows(path)
    con = duckdb.connect()
    line_functions(con)
    df = _strict_timestamps(con, df, "purchased_at")
    failing = set(failing_rows(df, "orders")["index"].to_list())
    clean = df.select(ORDER_CLEAN.alias("c"))["c"].to_list()
    assert {i for i, c in enumerate(clean) if not c} == failing
    assert order_reasons(df).to_list() == reject_reasons(df, "orders").to_list()


# JSON values as text with whether JSON's grammar reads them: arrays and objects may get a
# trailing comma (DuckDB's parser passes it; §3: malformed JSON), strings may hold text that
# looks like one
_SCALARS = st.sampled_from(["1", "-2.5e3", "true", "null", '"x"', '",}"', '"a, ]"', '"\\\\"'])


def _json_values(inner):
    space = st.sampled_from(["", " ", "\t", " \t "])

    def joined(parts, trailing, pad, is_object):
        items = [f'"k{i}": {t}' if is_object else t for i, (t, _) in enumerate(parts)]
        body = ",".join(items) + ("," + pad if trailing and parts else "")
        text = ("{" if is_object else "[") + body + ("}" if is_object else "]")
        return text, all(ok for _, ok in parts) and not (trailing and parts)

    return st.builds(joined, st.lists(inner, max_size=3), st.booleans(), space, st.booleans())


JSON_VALUES = st.recursive(_SCALARS.map(lambda t: (t, True)), _json_values, max_leaves=8)


@settings(max_examples=150, deadline=None, database=None)
@given(JSON_VALUES, st.sampled_from([b"", b" "]))
def test_a_line_is_json_exactly_when_json_s_grammar_reads_it(value, pad):
    """An extra field of any shape: the line is malformed_json exactly when the value breaks
    JSON's grammar (a trailing comma anywhere in it), whatever text its strings hold."""
    import json

    text, ok = value
    good = (
        b'{"event_id": "e1", "customer_id": "c1", "account_id": "a1", "function": "f",'
        b' "quantity": 1.5, "status": "succeeded", "occurred_at": "2026-11-26T10:00:00+08:00"'
    )
    line = good + b', "extra": ' + text.encode() + pad + b"}"
    try:
        json.loads(line)
        grammar = True
    except ValueError:
        grammar = False
    assert grammar == ok
    facts = extracted([line])
    assert facts["json_ok"].to_list() == [ok]
    assert facts["clean"].to_list() == [ok]
