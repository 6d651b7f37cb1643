"""Order rows of an orders CSV accepted into `orders` or rejected with their reason (§3)."""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from tasks.db import frame, scalar, sql
from tasks.inbox_files import UnreadableFile, open_regular
from tasks.keyed_files import record_changes
from tasks.validate import TIMESTAMP_WITH_OFFSET, order_reasons

if TYPE_CHECKING:
    from tasks.ingest_report import IngestReport

# a field as long as the file may be (the default 128 KiB made a long id `malformed_row`
# rather than `bad_id`); the file is in memory whole anyway
csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))

ORDER_FIELDS = ["order_id", "customer_id", "product", "term_months", "amount_cny", "purchased_at"]


ROW_SCHEMA = {
    "line_no": pl.Int64,
    "raw": pl.String,
    "utf8_ok": pl.Boolean,
    "nonblank": pl.Boolean,
    "n_fields": pl.Int64,
}
ROW_SCHEMA |= {f: pl.String for f in ORDER_FIELDS}


def read_order_rows(path: Path) -> pl.DataFrame:
    """Every data row of an orders CSV (RFC 4180, a leading UTF-8 byte-order mark allowed):
    its first line's number, raw text and fields (as text). A row that is not valid UTF-8
    keeps its bytes as \\xNN escapes in `raw` (never repaired) and is `bad_encoding`."""
    header, rows = _csv_rows(_read_text(path))
    df = pl.DataFrame(rows, schema=ROW_SCHEMA)
    if header and not _header_ok(header):
        # a header without the expected names: every row is malformed
        df = df.with_columns(pl.lit(-1, dtype=pl.Int64).alias("n_fields"))
    elif header:
        # a row as wide as the header is well formed (its extra columns ignored); any other
        # is malformed_row, six fields under a wider header too (its fields would be read
        # shifted: `missing_field:purchased_at` for a row one field short)
        df = df.with_columns(
            pl.when(pl.col("n_fields") == len(header))
            .then(6)
            .when(pl.col("n_fields") == 6)
            .then(-1)
            .otherwise(pl.col("n_fields"))
            .alias("n_fields")
        )
    return df


def _read_text(path: Path) -> str:
    """The file's text without a leading byte-order mark; bytes that are not UTF-8 kept as
    surrogate escapes."""
    try:
        with open_regular(path) as f:
            data = f.read()
    except OSError as exc:
        raise UnreadableFile(f"{type(exc).__name__}: {exc.strerror or exc}") from exc
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    return data.decode("utf-8", errors="surrogateescape")


def _header_ok(header: list[str]) -> bool:
    """The header names every order field exactly once."""
    return all(header.count(f) == 1 for f in ORDER_FIELDS)


def _csv_rows(text: str) -> tuple[list[str], list[dict]]:
    """The header's names and a dict per data row (a blank line too: `empty_line`, kept with
    its line number like a blank usage line, never dropped silently).

    The header is the first row that is not blank nor Excel's `sep=` line (each of those a
    rejected row of its own); its names are matched without case or padding. No header, or
    one not naming each field once, makes every row malformed (its columns cannot be told:
    none is guessed)."""
    physical = _physical_lines(text)
    header: list[str] | None = None
    positions: dict[str, int | None] = dict.fromkeys(ORDER_FIELDS)
    rows = []
    for start, end, fields in _records(physical):
        raw = "".join(physical[start:end]).rstrip("\r\n")
        if header is None:
            names = None if fields is None else [h.strip(" \t").lower() for h in fields]
            if names is not None and (
                not raw.strip(" \t") or raw.strip(" \t").lower().startswith("sep=")
            ):
                rows.append(_order_row(start + 1, raw, fields, positions))  # (rejected)
                continue
            if names is not None and _header_ok(names):
                header = names
                positions = {f: names.index(f) for f in ORDER_FIELDS}
                continue
            # no header, or one naming a field twice or not at all, or that cannot be
            # split (a quote left open): its line is a row of its own, rejected with the rest
            # (the columns cannot be told: none is guessed)
            header = names if names else ['"']
            fields = None  # (no column of it can be told either)
        rows.append(_order_row(start + 1, raw, fields, positions))
    return header or [], rows


# a quoted CSV field (RFC 4180: `""` inside it is two of these, back to back)
_QUOTED = re.compile(r'"[^"]*"')


def _lone_crs(text: str) -> int:
    return text.count("\r") - text.count("\r\n")


def _physical_lines(text: str) -> list[str]:
    """The file's lines, each with its end: lines end at newlines (a carriage return before
    one is part of the CRLF), so a row's number counts newlines as a usage line's does; a
    lone carriage return inside a row stays in it (quoted: data; unquoted: the row is
    malformed). A file with more lone carriage returns than newlines outside quoted fields
    (old Mac line ends, perhaps with a newline or a row of another editor's ends in it) is
    split at both; carriage returns inside a quoted field are its data and count for
    nothing (six in one id made a file of newlines old Mac, its later rows misnumbered). An
    empty file (or a byte-order mark alone) has no line: no row, not a blank one."""
    if not text:
        return []
    if _lone_crs(text) > text.count("\n") and _lone_crs(_QUOTED.sub("", text)) > (
        _QUOTED.sub("", text).count("\n")
    ):
        return list(io.StringIO(text, newline=""))
    lines = [line + "\n" for line in text.split("\n")]
    if text.endswith("\n"):
        lines.pop()  # (nothing after the last newline)
    else:
        lines[-1] = lines[-1][:-1]
    return lines


def _records(physical: list[str]) -> Iterator[tuple[int, int, list[str] | None]]:
    """Each CSV record of the file's lines: its first line's index, the index past its last
    line, its fields (None: it could not be split). A quote left open at the end of the file
    is the row that opened it alone, malformed: reading resumes on the line after it, so an
    unclosed quote never swallows the rows behind it."""
    start = 0
    while start < len(physical):
        # (strict: text after a closing quote, `"c3"x`, is no RFC 4180 field: malformed)
        reader = csv.reader(iter(physical[start:]), strict=True)
        resume = None
        while True:
            first = start + reader.line_num
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error:  # a field past the csv module's limit, ...: the row is malformed
                fields = None
            end = start + reader.line_num
            if end == len(physical) and _ends_in_open_quote("".join(physical[first:end])):
                yield first, first + 1, None
                resume = first + 1
                break
            yield first, end, fields
        if resume is None:
            return
        start = resume


def _ends_in_open_quote(raw: str) -> bool:
    """Whether a record's text ends inside a quoted field (RFC 4180, as the csv module reads
    it leniently: text after a closing quote joins the field)."""
    if '"' not in raw:
        return False
    try:
        for _ in csv.reader(io.StringIO(raw, newline=""), strict=True):
            pass
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            return True
    else:
        return False
    # the strict reader stopped at text after a closing quote: follow the quotes by hand
    quoted, at_start, i = False, True, 0
    while i < len(raw):
        c = raw[i]
        if quoted:
            if c == '"':
                if raw[i + 1 : i + 2] == '"':
                    i += 1
                else:
                    quoted = False
        elif c == '"' and at_start:
            quoted = True
        at_start = not quoted and c in ",\r\n"
        i += 1
    return quoted


def _order_row(
    line_no: int, raw: str, fields: list[str] | None, positions: dict[str, int | None]
) -> dict:
    """One data row: its line number, raw text, whether it is UTF-8, its fields (None: the
    row could not be split into fields)."""
    utf8_ok = _is_utf8(raw)
    # blank: nothing, or only spaces and tabs (`,,,,,` is a row of six empty fields)
    row = {"line_no": line_no, "raw": raw, "utf8_ok": utf8_ok, "nonblank": bool(raw.strip(" \t"))}
    if not utf8_ok:
        row["raw"] = _shown(raw)
        fields = None
    row["n_fields"] = len(fields) if fields is not None else -1
    for f, i in positions.items():
        v = fields[i] if fields is not None and i is not None and i < len(fields) else ""
        # ids are data, kept as sent (§3); spaces and tabs around the other fields are
        # dropped (not other white space: `basic\u3000` is no product)
        row[f] = (v if f in ("order_id", "customer_id") else v.strip(" \t")) or None
    return row


def _shown(raw: str) -> str:
    """A row's text as a table can hold it: bytes that are not UTF-8 as \\xNN escapes."""
    return raw.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _is_utf8(text: str) -> bool:
    """False when the text holds bytes decoded with surrogateescape (not valid UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def ingest_orders_file(
    con,
    path: Path,
    file_id: int,
    *,
    tz: str,
    run_id: str,
    report: IngestReport,
    late_before: date | None,
    today: date | None = None,
) -> None:
    """Accept or reject each order row of one CSV file."""
    df = read_order_rows(path)
    df = _strict_timestamps(con, df, "purchased_at")
    df = df.with_columns(order_reasons(df).alias("reason"))
    con.register("order_rows", df.to_arrow())
    checked = frame(
        con,
        sql("accept_orders"),
        {
            "tz": tz,
            "late_before": late_before or date(1, 1, 1),
            "last_day": (today or date(9999, 12, 30)) + timedelta(days=1),
        },
    )
    con.unregister("order_rows")
    _store_orders(con, checked, path, file_id, run_id, report)


def _strict_timestamps(con, df: pl.DataFrame, col: str) -> pl.DataFrame:
    """Parse timestamps with DuckDB (offset required by pattern); unparseable become NULL."""
    con.register("ts_rows", df.select(pl.col(col)).to_arrow())
    parsed = frame(
        con,
        f"select strict_timestamptz({col}, $p) as ts from ts_rows",
        {"p": TIMESTAMP_WITH_OFFSET},
    )
    con.unregister("ts_rows")
    return df.with_columns(parsed["ts"].cast(pl.Datetime("us", "UTC")).alias(f"{col}_ts"))


def _store_orders(
    con, checked: pl.DataFrame, path: Path, file_id: int, run_id: str, report: IngestReport
) -> None:
    """Checked rows stored: rejects with their reason, accepted orders (and new customers);
    duplicates counted; the file's counts and the earliest day it touches."""
    rejected = checked.filter(
        pl.col("final_reason").is_not_null() & (pl.col("final_reason") != "duplicate")
    )
    accepted = checked.filter(pl.col("final_reason").is_null())
    dups = checked.filter(pl.col("final_reason") == "duplicate").height
    con.register("rej", rejected.select("line_no", "raw", "final_reason").to_arrow())
    con.execute(
        "insert into rejected_orders select ?, line_no, raw, final_reason, now(), ? from rej",
        [str(path), run_id],
    )
    con.unregister("rej")
    _insert_accepted(con, accepted, file_id)
    report.orders_accepted += accepted.height
    report.orders_rejected += rejected.height
    report.order_duplicates += dups
    report.count_rejects(rejected["final_reason"])
    earliest = _earliest_touched(accepted)
    report.touch(earliest)
    con.execute(
        "update ingested_files set lines = ?, accepted = ?, rejected = ?, duplicates = ?, "
        "earliest_day = ? where file_id = ?",
        [
            checked.height,
            accepted.height,
            rejected.height,
            dups,
            earliest,
            file_id,
        ],
    )


def _insert_accepted(con, accepted: pl.DataFrame, file_id: int) -> None:
    """Accepted rows into orders, their customers new to `customers` first (keys in order of
    first appearance)."""
    con.register("acc", accepted.to_arrow())
    known = scalar(con, "select coalesce(max(customer_key), 0) from customers")
    con.execute(
        """
        insert into customers
        select (select coalesce(max(customer_key), 0) from customers) + row_number() over (
                   order by min(line_no)),
               customer_id,
               md5_number_lower(customer_id)
        from acc where customer_id not in (select customer_id from customers)
        group by customer_id
        """
    )
    con.execute(
        """
        insert into orders
        select (select coalesce(max(order_key), 0) from orders)
                   + row_number() over (order by a.line_no),
               a.order_id, a.customer_id, c.customer_key, a.product, a.source,
               a.term, a.amount, a.purchased_at_ts, a.purchase_day, ?, a.line_no, now()
        from acc as a join customers as c using (customer_id)
        """,
        [file_id],
    )
    con.unregister("acc")
    # the rows added, for the published copies (tasks/keyed_files.py)
    new = "select customer_key from customers where customer_key > $k"
    record_changes(con, "customers", new, {"k": known})
    record_changes(con, "orders", "select order_key from orders where file_id = $f", {"f": file_id})


def _earliest_touched(accepted: pl.DataFrame) -> date | None:
    """The earliest billing day the accepted orders touch. An order bought exactly at a local
    midnight touches the day before too: a pool starting exactly at a cutoff counts in that
    day's suspension list (§9)."""
    touched = accepted.select(
        pl.when(pl.col("at_midnight"))
        .then(pl.col("purchase_day") - timedelta(days=1))
        .otherwise(pl.col("purchase_day"))
    ).to_series()
    return touched.min() if accepted.height else None
