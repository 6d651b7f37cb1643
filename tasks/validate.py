"""Row-level schemas of orders and usage lines (Pandera on Polars) and their reject reasons."""

from __future__ import annotations

import contextlib
import json
import re
import threading

import pandera.polars as pa
import polars as pl
from pandera.errors import SchemaErrors

# An ISO-8601 instant with an offset (§1; the same without one is `timestamp_without_offset`),
# its separator T, t or a space and UTC Z or z (RFC 3339 allows the lowercase letters),
# within §3's limits: a year from 2000 to 2099, an offset within -14:00..+14:00 with
# minutes < 60 (Z or z, ±HH, ±HHMM or ±HH:MM). Read by sql/ingest_macros.sql.
TIMESTAMP_WITH_OFFSET = (
    r"^20[0-9]{2}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?"
    r"([Zz]|[+-](0[0-9]|1[0-3])(:?[0-5][0-9])?|[+-]14(:?00)?)$"
)
TIMESTAMP_WITHOUT_OFFSET = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?)?$"
)

EVENT_TEXT_FIELDS = ("event_id", "customer_id", "account_id", "function", "status", "occurred_at")
NUMBER_TYPES = ["UBIGINT", "BIGINT", "DOUBLE"]

# an order's term: a whole number of months (6, or 6.0 as a spreadsheet may write it); its
# amount: a decimal number (30, 30.00 or 30.000 alike: compared with the price by value,
# exactly — sql/accept_orders.sql reads up to 18 decimal places unrounded)
TERM_MONTHS = r"^[0-9]{1,3}(\.0{1,6})?$"
AMOUNT = r"^[0-9]{1,15}(\.[0-9]{1,18})?$"

# §3: an identifier holds no control character (U+0000-U+001F, U+007F)
CONTROL_CHARACTER = r"[\x00-\x1F\x7F]"
ID_MAX_CHARS = 200

# When a line breaks several rules it is rejected for the first of these.
REASON_PRIORITY = [
    "bad_encoding",
    "empty_line",
    "malformed_json",
    "malformed_row",
    *[f"missing_field:{f}" for f in (*EVENT_TEXT_FIELDS, "quantity", "order_id", "product")],
    "missing_field:amount_cny",
    "missing_field:purchased_at",
    *[f"wrong_type:{f}" for f in (*EVENT_TEXT_FIELDS, "quantity")],
    "bad_id",
    "timestamp_without_offset",
    "bad_timestamp",
    "bad_status",
    "bad_quantity",
    "quantity_not_positive",
    "quantity_too_large",
    "quantity_too_precise",
    "bad_term",
    "bad_amount",
]


def _not_matching(pattern: str) -> pa.Check:
    """Passes values that do not match the pattern."""
    return pa.Check(
        lambda data: data.lazyframe.select(~pl.col(data.key).str.contains(pattern).fill_null(False))
    )


def _valid_id() -> pa.Check:
    """§3: 1-200 characters and no control character."""
    return pa.Check(lambda data: data.lazyframe.select(_id_ok(data.key)))


def _event_columns() -> dict[str, tuple[pa.Column, list[str]]]:
    """The facts sql/extract_events.sql reads off each usage line, and the rules they obey.

    A field's `<field>_is_text` (`quantity_is_number`) is NULL when the field is missing or
    JSON null (`missing_field:<field>`) and false when it has another JSON type
    (`wrong_type:<field>`); the text values themselves stay in DuckDB.
    """
    cols: dict[str, tuple[pa.Column, list[str]]] = {
        "utf8_ok": (pa.Column(pl.Boolean, pa.Check.eq(True)), ["bad_encoding"]),
        "json_ok": (pa.Column(pl.Boolean, pa.Check.eq(True)), ["malformed_json"]),
        "nonblank": (pa.Column(pl.Boolean, pa.Check.eq(True)), ["empty_line"]),
    }
    for f in EVENT_TEXT_FIELDS:
        cols[f"{f}_is_text"] = (
            pa.Column(pl.Boolean, pa.Check.eq(True), nullable=False),
            [f"wrong_type:{f}"],
        )
    cols["quantity_is_number"] = (
        pa.Column(pl.Boolean, pa.Check.eq(True), nullable=False),
        ["wrong_type:quantity"],
    )
    cols["ids_ok"] = (pa.Column(pl.Boolean, pa.Check.eq(True), nullable=True), ["bad_id"])
    # NULL when an earlier fact already failed (the quantity missing, not a number, ...)
    for col, passes, reason in (
        ("quantity_finite", True, "bad_quantity"),
        ("quantity_positive", True, "quantity_not_positive"),
        ("quantity_too_large", False, "quantity_too_large"),
        ("quantity_too_fine", False, "quantity_too_precise"),
    ):
        cols[col] = (pa.Column(pl.Boolean, pa.Check.eq(passes), nullable=True), [reason])
    cols["status"] = (
        pa.Column(pl.String, pa.Check.isin(["succeeded", "failed"]), nullable=True),
        ["bad_status"],
    )
    cols["occurred_at_unparsed"] = (
        pa.Column(pl.String, _not_matching(TIMESTAMP_WITHOUT_OFFSET), nullable=True),
        ["timestamp_without_offset"],
    )
    cols["occurred_at_ts"] = (pa.Column(pl.Datetime("us", "UTC"), nullable=False), [])
    return cols


def _order_columns() -> dict[str, tuple[pa.Column, list[str]]]:
    cols: dict[str, tuple[pa.Column, list[str]]] = {
        "utf8_ok": (pa.Column(pl.Boolean, pa.Check.eq(True)), ["bad_encoding"]),
        "nonblank": (pa.Column(pl.Boolean, pa.Check.eq(True)), ["empty_line"]),
        "n_fields": (pa.Column(pl.Int64, pa.Check.eq(6)), ["malformed_row"]),
    }
    for f in ("order_id", "customer_id", "product", "amount_cny", "purchased_at"):
        cols[f] = (pa.Column(pl.String, nullable=False), [])
    for f in ("order_id", "customer_id"):
        cols[f] = (pa.Column(pl.String, _valid_id(), nullable=False), ["bad_id"])
    cols["term_months"] = (
        pa.Column(pl.String, pa.Check.str_matches(TERM_MONTHS), nullable=True),
        ["bad_term"],
    )
    cols["amount_cny"] = (
        pa.Column(pl.String, pa.Check.str_matches(AMOUNT), nullable=False),
        ["bad_amount"],
    )
    cols["purchased_at"] = (
        pa.Column(pl.String, _not_matching(TIMESTAMP_WITHOUT_OFFSET), nullable=False),
        ["timestamp_without_offset"],
    )
    cols["purchased_at_ts"] = (pa.Column(pl.Datetime("us", "UTC"), nullable=False), [])
    return cols


# Nulls in a derived column mean an earlier field was already bad: name that field's reason.
_NULL_REASONS = {
    **{f"{f}_is_text": f"missing_field:{f}" for f in EVENT_TEXT_FIELDS},
    "quantity_is_number": "missing_field:quantity",
    "occurred_at_ts": "bad_timestamp",
    "purchased_at_ts": "bad_timestamp",
}


def _schema(columns: dict[str, tuple[pa.Column, list[str]]], name: str) -> pa.DataFrameSchema:
    return pa.DataFrameSchema({k: c for k, (c, _) in columns.items()}, name=name, strict=False)


EVENT_COLUMNS = _event_columns()
ORDER_COLUMNS = _order_columns()
EVENT_SCHEMA = _schema(EVENT_COLUMNS, "usage_line")
ORDER_SCHEMA = _schema(ORDER_COLUMNS, "order_row")


def _reason(columns: dict, column: str, check: str, check_number: int | None) -> str:
    if check == "not_nullable":
        return _NULL_REASONS.get(column, f"missing_field:{column}")
    if check.startswith("dtype"):
        return f"wrong_type:{column}"
    reasons = columns[column][1]
    return reasons[check_number or 0] if reasons else f"invalid:{column}"


_WARM_UP = threading.Lock()
_warmed_up = False


def warm_up() -> None:
    """Pandera's first validation in a process registers its Polars backends, which imports
    hypothesis when it is installed (0.3-0.5 s here): done once, on empty frames, so that
    it can happen off the critical path (`warm_up_in_background`). Idempotent; a caller
    arriving while another thread warms up waits for it."""
    global _warmed_up
    with _WARM_UP:
        if _warmed_up:
            return
        for schema in (EVENT_SCHEMA, ORDER_SCHEMA):
            schema.validate(
                pl.DataFrame(schema={n: c.dtype.type for n, c in schema.columns.items()})
            )
        _warmed_up = True


def warm_up_in_background() -> None:
    """`warm_up` on a thread while the caller goes on (reading and digesting files, which
    release the GIL); the first validation waits for it. An error there is left for that
    validation to raise in the caller's thread."""
    if not _warmed_up:
        threading.Thread(target=_warm_up_quietly, name="pandera-warm-up", daemon=True).start()


def _warm_up_quietly() -> None:
    with contextlib.suppress(Exception):
        warm_up()


def failing_rows(df: pl.DataFrame, kind: str) -> pl.DataFrame:
    """The rows that break the row schema: (index, reason), the first reason by priority.

    One lazy Pandera validation; `index` is the row's position in `df`. Rows that pass are
    not listed, so the answer is small when the data is good.
    """
    warm_up()
    columns, schema = (
        (EVENT_COLUMNS, EVENT_SCHEMA) if kind == "usage" else (ORDER_COLUMNS, ORDER_SCHEMA)
    )
    empty = pl.DataFrame(schema={"index": pl.Int64, "reason": pl.String})
    if df.height == 0:
        return empty
    try:
        schema.validate(df, lazy=True)
        return empty
    except SchemaErrors as err:
        failures = err.failure_cases.filter(pl.col("index").is_not_null())
        if failures.height == 0:  # a failure of the whole frame, not of its rows
            raise
    rank = {r: i for i, r in enumerate(REASON_PRIORITY)}
    kinds = failures.select("column", "check", "check_number").unique()
    kinds = kinds.with_columns(
        pl.Series(
            "reason",
            [_reason(columns, *row) for row in kinds.iter_rows()],
            dtype=pl.String,
        )
    )
    named = failures.join(kinds, on=["column", "check", "check_number"], nulls_equal=True).select(
        pl.col("index").cast(pl.Int64), "reason"
    )
    return (
        named.with_columns(
            pl.col("reason")
            .replace_strict(rank, default=len(rank), return_dtype=pl.Int64)
            .alias("rank")
        )
        .sort("index", "rank")
        .unique("index", keep="first", maintain_order=True)
        .select("index", "reason")
    )


def reject_reasons(df: pl.DataFrame, kind: str) -> pl.Series:
    """One reason per row (None where the row passes), from a lazy Pandera validation."""
    first = failing_rows(df, kind)
    reasons = pl.Series("reason", [None] * df.height, dtype=pl.String)
    return reasons.scatter(first["index"], first["reason"]) if first.height else reasons


def _id_ok(column: str) -> pl.Expr:
    return pl.col(column).str.len_chars().is_between(1, ID_MAX_CHARS) & ~pl.col(
        column
    ).str.contains(CONTROL_CHARACTER)


# an order row that passes every check of the row schema (ORDER_COLUMNS), in one Polars
# expression: only the other rows go to Pandera for their reason (tests/test_validate.py
# checks the two agree), so a file of good orders waits for no Pandera start-up
ORDER_CLEAN = (
    pl.col("utf8_ok")
    & pl.col("nonblank")
    & (pl.col("n_fields") == 6)
    & _id_ok("order_id")
    & _id_ok("customer_id")
    & pl.col("product").is_not_null()
    & (pl.col("term_months").is_null() | pl.col("term_months").str.contains(TERM_MONTHS))
    & pl.col("amount_cny").str.contains(AMOUNT)
    & ~pl.col("purchased_at").str.contains(TIMESTAMP_WITHOUT_OFFSET)
    & pl.col("purchased_at_ts").is_not_null()
).fill_null(False)


def order_reasons(df: pl.DataFrame) -> pl.Series:
    """One reason per order row (None where it passes): Pandera's, for the rows that are not
    ORDER_CLEAN only (most files have none)."""
    clean = df.select(ORDER_CLEAN.alias("clean"))["clean"]
    reasons = pl.Series("reason", [None] * df.height, dtype=pl.String)
    if clean.all():
        return reasons
    unclean = clean.not_().arg_true()
    return reasons.scatter(unclean, reject_reasons(df[unclean], "orders"))


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_COLON = re.compile(r"[ \t\r\n]*:[ \t\r\n]*")
_NUMBER = re.compile(r"-?(?:\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|-?Infinity|NaN")
_STRUCTURE = re.compile(r'["{}\[\],]')


# in a JSON string: a surrogate pair's two escapes, a lone surrogate's escape, any other escape
_ESCAPE = re.compile(
    r"\\u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})"
    r"|\\u([dD][89a-fA-F][0-9a-fA-F]{2})|\\.",
    re.S,
)


def lone_surrogates_escaped(raw: str | None) -> str | None:
    """The line with each escape of a lone UTF-16 surrogate in its strings (`"\\ud83d"`, as
    producers that cut text by UTF-16 units write it: JSON's grammar allows it, DuckDB's
    parser does not) made `\\u0001`, everything else as written (a pair stays a pair; an
    escaped backslash before `ud800` is no escape). DuckDB then reads the line: an ignored
    field passes, and an id holding one is `bad_id` for its control character (§3: an id is
    valid Unicode). None when the line has none."""
    if raw is None:
        return None
    found = False

    def escape(m: re.Match) -> str:
        nonlocal found
        if m.group(3) is None:
            return m.group()
        found = True
        return "\\u0001"

    fixed = _STRING.sub(lambda m: _ESCAPE.sub(escape, m.group()), raw)
    return fixed if found else None


def strictly_json(raw: str | None) -> bool | None:
    """Whether JSON's grammar reads the line (Python's parser): DuckDB's `json_valid` also
    passes a trailing comma (`{"a": 1,}`, `[1, 2,]`), which §3 rejects as malformed_json.
    For the few lines holding a comma before a closing bracket (sql/extract_events.sql).
    NaN and Infinity pass, as DuckDB passes them (a quantity of NaN is bad_quantity); a line
    nested deeper than Python's parser goes is taken as DuckDB took it."""
    if raw is None:
        return None
    try:
        json.loads(raw)
    except RecursionError:
        return True
    except ValueError:
        return False
    return True


def quantity_literal(raw: str | None) -> str | None:
    """The line's top-level "quantity" exactly as written, when it is a JSON number (the
    first of repeated keys, as DuckDB reads them); None when there is none or the line is not
    a JSON object. For the few lines sql/extract_events.sql cannot read it off by text: keys
    are decoded (`"quantit\\u0079"` is "quantity"), strings and nested values skipped, and
    no recursion, so no nesting depth or decoy key changes the answer."""
    if raw is None:
        return None
    depth, top_is_object, expect_key, i = 0, False, False, 0
    while (m := _STRUCTURE.search(raw, i)) is not None:
        c, i = m.group(), m.end()
        if c == '"':
            token = _STRING.match(raw, m.start())
            if token is None:
                return None
            i = token.end()
            if depth == 1 and expect_key:
                expect_key = False
                colon = _COLON.match(raw, i)
                if colon is None:
                    return None
                i = colon.end()
                try:
                    key = json.loads(token.group())
                except ValueError:
                    return None
                if key == "quantity":
                    number = _NUMBER.match(raw, i)
                    return number.group() if number else None
        elif c in "{[":
            depth += 1
            if depth == 1:
                top_is_object = c == "{"
            expect_key = top_is_object and depth == 1
        elif c in "}]":
            depth -= 1
        elif depth == 1:  # a comma between the top object's members
            expect_key = top_is_object
    return None
