"""Inbox files turned into accepted orders and events, and rejects with their reasons (§3)."""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import json
import os
import stat
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from tasks.catalog import Catalog
from tasks.db import frame, run_sql, scalar, sql
from tasks.pools import rebuild_pools
from tasks.validate import (
    CONTROL_CHARACTER,
    EVENT_COLUMNS,
    TIMESTAMP_WITH_OFFSET,
    failing_rows,
    reject_reasons,
)

CHUNK_BYTES = 64 << 20
ORDER_FIELDS = ["order_id", "customer_id", "product", "term_months", "amount_cny", "purchased_at"]


@dataclass
class IngestReport:
    """What one ingest pass read, accepted and rejected."""

    files: list[str] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)
    rejected_files: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    orders_accepted: int = 0
    orders_rejected: int = 0
    events_accepted: int = 0
    events_rejected: int = 0
    duplicates: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    earliest_day: date | None = None  # the earliest billing day new accepted rows touch
    seconds: dict[str, float] = field(default_factory=dict)  # read, validate, rate, store

    @contextmanager
    def timed(self, step: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[step] = self.seconds.get(step, 0.0) + time.perf_counter() - t

    def touch(self, day: date | None) -> None:
        if day is not None and (self.earliest_day is None or day < self.earliest_day):
            self.earliest_day = day

    def count_rejects(self, reasons: pl.Series) -> None:
        for reason, n in reasons.value_counts().iter_rows():
            self.rejected_by_reason[reason] = self.rejected_by_reason.get(reason, 0) + n


USAGE_SUFFIXES = (".jsonl", ".jsonl.gz")


def inbox_files(inbox: Path) -> tuple[list[Path], list[Path], list[tuple[Path, str]]]:
    """Order files and usage files of the inbox, each in path order, and the entries turned
    away unopened: a link or a special file is `not_a_regular_file` (§3 "Files")."""
    orders: list[Path] = []
    usage: list[Path] = []
    refused: list[tuple[Path, str]] = []

    def sort_in(path: Path, into: list[Path]) -> None:
        mode = path.lstat().st_mode
        if stat.S_ISREG(mode):
            into.append(path)
        else:
            refused.append((path, "link" if stat.S_ISLNK(mode) else "special file"))

    for folder, into in ((inbox / "orders", orders), (inbox / "usage", usage)):
        if folder.is_symlink():
            refused.append((folder, "link"))
            continue
        if not folder.is_dir():
            continue
        for root, dirs, names in os.walk(folder, followlinks=False):
            here = Path(root)
            for d in dirs:
                if (here / d).is_symlink():  # listed, never followed
                    refused.append((here / d, "link"))
            for name in names:
                is_orders = into is orders and here == folder and name.endswith(".csv")
                if is_orders or (into is usage and name.endswith(USAGE_SUFFIXES)):
                    sort_in(here / name, into)
    return sorted(orders), sorted(usage), sorted(refused)


class NotARegularFile(Exception):
    """The path is a link or a special file: never read (§3 "Files")."""


class UnreadableFile(Exception):
    """The file cannot be read to its end (a truncated or corrupt gzip, an I/O error)."""


def _open_regular(path: Path):
    """The file opened for reading, refusing a link or a special file (checked on the open
    file itself: a link swapped in after the listing is refused too)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if path.is_symlink():
            raise NotARegularFile("link") from exc
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotARegularFile("special file")
    return os.fdopen(fd, "rb")


def file_digest(path: Path) -> tuple[str, bool]:
    """The file's sha256, and whether its bytes hold a carriage return (see iter_line_chunks)."""
    h = hashlib.sha256()
    has_cr = False
    with _open_regular(path) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            has_cr = has_cr or b"\r" in block
    return h.hexdigest(), has_cr


def _register_file(con, path: Path, kind: str, sha: str, run_id: str) -> int:
    st = path.stat()
    file_id = scalar(con, "select coalesce(max(file_id), 0) + 1 from ingested_files")
    con.execute(
        "insert into ingested_files (file_id, path, kind, sha256, bytes, mtime_ns, lines, "
        "accepted, rejected, duplicates, lines_done, complete, ingested_at, run_id) "
        "values (?, ?, ?, ?, ?, ?, 0, 0, 0, 0, 0, false, now(), ?)",
        [file_id, str(path), kind, sha, st.st_size, st.st_mtime_ns, run_id],
    )
    return file_id


@dataclass(frozen=True)
class InboxFile:
    """A file to ingest: new, or one a killed run left half done (resume after lines_done)."""

    path: Path
    sha: str
    file_id: int | None = None
    lines_done: int = 0
    has_cr: bool = False  # a carriage return in its bytes: lines split the plain way


def _new_files(
    con, paths: list[Path], report: IngestReport, turn_away: Callable[[Path, str, str], None]
) -> list[InboxFile]:
    """The files whose content was never fully ingested nor turned away; known files are not
    re-read. A file that cannot be opened as a regular file is turned away here."""
    known = con.execute(
        "select path, bytes, mtime_ns, sha256, file_id, lines_done, complete from ingested_files"
    ).fetchall()
    by_stat = {(p, b, m) for p, b, m, *_, done in known if done}
    complete = {sha for _, _, _, sha, *_, done in known if done}
    complete |= {r[0] for r in con.execute("select sha256 from rejected_files").fetchall()}
    partial = {sha: (fid, n) for _, _, _, sha, fid, n, done in known if not done}
    fresh = []
    for path in paths:
        try:
            st = path.lstat()
            if (str(path), st.st_size, st.st_mtime_ns) in by_stat:
                report.skipped_files.append(str(path))
                continue
            sha, has_cr = file_digest(path)
        except NotARegularFile as exc:
            turn_away(path, "not_a_regular_file", str(exc))
            continue
        except OSError as exc:
            turn_away(path, "unreadable_file", f"{type(exc).__name__}: {exc.strerror or exc}")
            continue
        if sha in complete:
            report.skipped_files.append(str(path))
            continue
        complete.add(sha)
        fid, done = partial.get(sha, (None, 0))
        fresh.append(InboxFile(path, sha, fid, done or 0, has_cr))
    return fresh


def _purge_partial_files(con, keep: set[str]) -> None:
    """Take out what a killed run committed of a usage file that is no longer in the inbox
    as it was (removed, or replaced by other content): half a file is never billed."""
    stale = con.execute(
        "select file_id, path, ingested_at, sha256 from ingested_files where not complete"
    ).fetchall()
    for file_id, path, ingested_at, sha in stale:
        if sha in keep:
            continue
        _forget_file(con, file_id, path, ingested_at)


def _forget_file(con, file_id: int, path: str, ingested_at) -> None:
    """Delete a file's accepted events, rejected lines and registration (one transaction)."""
    con.execute("begin transaction")
    try:
        con.execute("delete from events where file_id = ?", [file_id])
        con.execute(
            "delete from rejected_events where source_file = ? and ingested_at >= ?",
            [path, ingested_at],
        )
        con.execute("delete from ingested_files where file_id = ?", [file_id])
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def _in_transaction(con, fn: Callable[[], None]) -> None:
    con.execute("begin transaction")
    try:
        fn()
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def ingest_inbox(
    con: duckdb.DuckDBPyConnection,
    inbox: Path,
    catalog: Catalog,
    *,
    tz: str,
    run_id: str,
    late_before: date | None = None,
    today: date | None = None,
    duplicate_window_days: int = 37,
    progress: Callable[[str], None] | None = None,
) -> IngestReport:
    """Ingest every inbox file not seen before (by content): orders first, then usage.

    An orders file is one transaction with the pools it changes. A usage file commits chunk
    by chunk with its progress (`lines_done`), so memory stays bounded and a killed run
    resumes after the last committed line: nothing is lost and nothing counted twice.
    """
    report = IngestReport()
    say = progress or (lambda _msg: None)
    order_files, usage_files, refused = inbox_files(inbox)
    run_sql(con, "ingest_macros")
    con.create_function(
        "quantity_literal", quantity_literal, ["VARCHAR"], "VARCHAR", side_effects=False
    )
    con.register("catalog_products", catalog.products().to_arrow())
    con.register("catalog_editions", catalog.editions.to_arrow())
    con.register("catalog_functions", catalog.functions.to_arrow())

    def turn_away(path: Path, reason: str, detail: str, sha: str | None = None) -> None:
        """A whole file rejected (§3 "Files"): listed once in rejected_files, never read."""
        if _record_rejected_file(con, path, reason, detail, sha, run_id):
            say(f"turned away {path}: {reason} ({detail})")
        report.rejected_files.append((str(path), reason))

    for path, kind in refused:
        turn_away(path, "not_a_regular_file", kind)
    limits = {"late_before": late_before, "today": today}
    for f in _new_files(con, order_files, report, turn_away):

        def ingest_orders(f=f):
            con.execute("delete from ingested_files where sha256 = ?", [f.sha])
            file_id = _register_file(con, f.path, "orders", f.sha, run_id)
            ingest_orders_file(con, f.path, file_id, tz=tz, run_id=run_id, report=report, **limits)
            rebuild_pools(con, catalog, tz=tz, file_id=file_id)
            con.execute("update ingested_files set complete = true where file_id = ?", [file_id])

        try:
            _in_transaction(con, ingest_orders)
        except UnreadableFile as exc:
            turn_away(f.path, "unreadable_file", str(exc), f.sha)
            continue
        report.files.append(str(f.path))
        say(f"ingested orders {f.path.name}")
    fresh = _new_files(con, usage_files, report, turn_away)
    _purge_partial_files(con, {f.sha for f in fresh})
    for f in fresh:
        file_id = f.file_id or _register_file(con, f.path, "usage", f.sha, run_id)
        try:
            ingest_usage_file(
                con,
                f.path,
                file_id,
                tz=tz,
                run_id=run_id,
                report=report,
                progress=say,
                skip_lines=f.lines_done,
                fast=not f.has_cr,
                duplicate_window_days=duplicate_window_days,
                **limits,
            )
        except UnreadableFile as exc:
            # none of its lines billed: what its batches committed is taken out again
            row = con.execute(
                "select path, ingested_at from ingested_files where file_id = ?", [file_id]
            ).fetchone()
            if row is not None:
                _forget_file(con, file_id, row[0], row[1])
            turn_away(f.path, "unreadable_file", str(exc), f.sha)
            continue
        report.files.append(str(f.path))
    return report


def _record_rejected_file(
    con, path: Path, reason: str, detail: str, sha: str | None, run_id: str
) -> bool:
    """One rejected_files row per file turned away (by content, or by path for a file
    never read); False when it was listed already."""
    key = sha or f"{reason}:{path}"
    if con.execute("select count(*) from rejected_files where sha256 = ?", [key]).fetchone()[0]:
        return False
    con.execute(
        "insert into rejected_files (source_file, reason, detail, ingested_at, run_id, sha256) "
        "values (?, ?, ?, now(), ?, ?)",
        [str(path), reason, detail[:300], run_id, key],
    )
    return True


class _Literal(str):
    """A JSON number or constant exactly as written."""


def _first_value(pairs: list[tuple[str, object]]) -> dict:
    out: dict = {}
    for k, v in pairs:
        out.setdefault(k, v)  # a repeated key: the first stands, as DuckDB reads it
    return out


def quantity_literal(raw: str | None) -> str | None:
    """The line's top-level "quantity" exactly as written, when it is a JSON number; for the
    rare line that names "quantity" more than once (sql/extract_events.sql)."""
    if raw is None:
        return None
    try:
        obj = json.loads(
            raw,
            parse_float=_Literal,
            parse_int=_Literal,
            parse_constant=_Literal,
            object_pairs_hook=_first_value,
        )
    except (ValueError, RecursionError):
        return None
    value = obj.get("quantity") if isinstance(obj, dict) else None
    return str(value) if isinstance(value, _Literal) else None


# ---------------------------------------------------------------- orders


def _read_order_rows(path: Path) -> pl.DataFrame:
    """Every data row of an orders CSV (RFC 4180, a leading UTF-8 byte-order mark allowed):
    its first line's number, raw text and fields (as text). A row that is not valid UTF-8
    keeps its bytes as \\xNN escapes in `raw` (never repaired) and is `bad_encoding`."""
    try:
        with _open_regular(path) as f:
            data = f.read()
    except OSError as exc:
        raise UnreadableFile(f"{type(exc).__name__}: {exc.strerror or exc}") from exc
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    text = data.decode("utf-8", errors="surrogateescape")
    physical: list[str] = []

    def lines() -> Iterator[str]:
        for line in io.StringIO(text, newline=""):
            physical.append(line)
            yield line

    reader = csv.reader(lines())
    header = [h.strip() for h in next(reader, [])]
    positions = {f: header.index(f) if f in header else None for f in ORDER_FIELDS}
    rows = []
    while True:
        line_no = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error:  # a field past the csv module's limit, ...: the row is malformed
            fields = None
        raw = "".join(physical[line_no - 1 : reader.line_num]).rstrip("\r\n")
        if fields is not None and not "".join(fields).strip():
            continue  # a blank line
        utf8_ok = _is_utf8(raw)
        row = {"line_no": line_no, "raw": raw, "utf8_ok": utf8_ok}
        if not utf8_ok:
            row["raw"] = raw.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            fields = None
        row["n_fields"] = len(fields) if fields is not None else -1
        for f, i in positions.items():
            v = (
                fields[i].strip()
                if fields is not None and i is not None and i < len(fields)
                else ""
            )
            row[f] = v or None
        rows.append(row)
    schema = {"line_no": pl.Int64, "raw": pl.String, "utf8_ok": pl.Boolean, "n_fields": pl.Int64}
    schema |= {f: pl.String for f in ORDER_FIELDS}
    df = pl.DataFrame(rows, schema=schema)
    if header and any(positions[f] is None for f in ORDER_FIELDS):
        # a header without the expected names: every row is malformed
        df = df.with_columns(pl.lit(-1, dtype=pl.Int64).alias("n_fields"))
    elif header:
        df = df.with_columns(
            pl.when(pl.col("n_fields") == len(header))
            .then(6)
            .otherwise(pl.col("n_fields"))
            .alias("n_fields")
        )
    return df


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
    df = _read_order_rows(path)
    df = _strict_timestamps(con, df, "purchased_at")
    df = df.with_columns(reject_reasons(df, "orders").alias("reason"))
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
    con.register("acc", accepted.to_arrow())
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
    report.orders_accepted += accepted.height
    report.orders_rejected += rejected.height
    report.duplicates += dups
    report.count_rejects(rejected["final_reason"])
    # an order bought exactly at a local midnight touches the day before too: a pool
    # starting exactly at a cutoff counts in that day's suspension list (§9)
    touched = accepted.select(
        pl.when(pl.col("at_midnight"))
        .then(pl.col("purchase_day") - timedelta(days=1))
        .otherwise(pl.col("purchase_day"))
    ).to_series()
    earliest = touched.min() if accepted.height else None
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


# ---------------------------------------------------------------- usage

# the columns the row schema checks (tasks/validate.py); the text values stay in DuckDB
EVENT_CHECKS = ", ".join(EVENT_COLUMNS)


def iter_line_chunks(
    path: Path, chunk_bytes: int | None = None, *, fast: bool = True
) -> Iterator[pa.Table]:
    """The file's lines in batches of about chunk_bytes: (line_no, raw), never all at once.

    fast: pyarrow's multi-threaded CSV reader splits the lines (one column, no quoting, a
    delimiter JSON text cannot hold unescaped); it raises `FastReadFailed` on a file it
    cannot read that way (invalid UTF-8, a control character 0x1f), and it would also end a
    line at a lone carriage return, so files holding one are read with fast=False: plain
    splitting at newlines, in Python.
    """
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    if fast:
        yield from _arrow_line_chunks(path, chunk_bytes)
    else:
        yield from _python_line_chunks(path, chunk_bytes)


class FastReadFailed(Exception):
    """The fast line reader cannot read this file; read it with fast=False."""


def _arrow_line_chunks(path: Path, chunk_bytes: int) -> Iterator[pa.Table]:
    compression = "gzip" if path.name.endswith(".gz") else None
    next_line = 1
    with (
        _open_regular(path) as raw_file,
        pa.input_stream(raw_file, compression=compression) as source,
    ):
        try:
            reader = pcsv.open_csv(
                source,
                read_options=pcsv.ReadOptions(column_names=["raw"], block_size=chunk_bytes),
                parse_options=pcsv.ParseOptions(
                    delimiter="\x1f",
                    quote_char=False,
                    escape_char=False,
                    newlines_in_values=False,
                    ignore_empty_lines=False,
                ),
                convert_options=pcsv.ConvertOptions(
                    column_types={"raw": pa.string()},
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                n = batch.num_rows
                yield pa.table(
                    {
                        "line_no": pa.array(range(next_line, next_line + n), pa.int64()),
                        "raw": batch["raw"],
                        "utf8_ok": pa.repeat(True, n),
                    }
                )
                next_line += n
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            if "Empty CSV file" in str(exc):
                return
            # invalid UTF-8, a 0x1f byte, a corrupt gzip: the plain reader decides
            raise FastReadFailed(str(exc)) from exc
        except OSError as exc:
            raise UnreadableFile(f"{type(exc).__name__}: {exc}") from exc


def _python_line_chunks(path: Path, chunk_bytes: int) -> Iterator[pa.Table]:
    next_line = 1
    rest = b""
    with _open_regular(path) as raw_file:
        f = gzip.GzipFile(fileobj=raw_file, mode="rb") if path.name.endswith(".gz") else raw_file
        while True:
            try:
                data = f.read(chunk_bytes)
            except (OSError, EOFError, zlib.error) as exc:
                # a truncated or corrupt gzip, an I/O error: the file is turned away whole
                raise UnreadableFile(f"{type(exc).__name__}: {exc}") from exc
            if not data:
                break
            data = rest + data
            cut = data.rfind(b"\n")
            if cut < 0:
                rest = data
                continue
            block, rest = data[:cut], data[cut + 1 :]
            table = _lines_table(block, next_line)
            next_line += table.num_rows
            yield table
    if rest:
        yield _lines_table(rest, next_line)


def _lines_table(block: bytes, first_line: int) -> pa.Table:
    """The block's lines (line_no, raw, utf8_ok). A line that is not valid UTF-8 keeps its
    bytes as \\xNN escapes in `raw`, never repaired (`bad_encoding`, §3)."""
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        raws, oks = [], []
        for line in block.split(b"\n"):  # a file with bad bytes: line by line (rare)
            line = line.rstrip(b"\r")
            try:
                raws.append(line.decode("utf-8"))
                oks.append(True)
            except UnicodeDecodeError:
                raws.append(line.decode("utf-8", "backslashreplace"))
                oks.append(False)
        lines = pa.array(raws, pa.string())
        utf8_ok = pa.array(oks, pa.bool_())
    else:
        lines = pc.split_pattern(pa.array([text], pa.large_string()), "\n").flatten()
        lines = pc.utf8_rtrim(lines, "\r").cast(pa.string())
        utf8_ok = pa.repeat(True, len(lines))
    numbers = pa.array(range(first_line, first_line + len(lines)), pa.int64())
    return pa.table({"line_no": numbers, "raw": lines, "utf8_ok": utf8_ok})


def ingest_usage_file(
    con,
    path: Path,
    file_id: int,
    *,
    tz: str,
    run_id: str,
    report: IngestReport,
    late_before: date | None,
    progress: Callable[[str], None],
    skip_lines: int = 0,
    fast: bool = True,
    today: date | None = None,
    duplicate_window_days: int = 37,
) -> None:
    """Accept, count as duplicate, or reject (with reason and raw line) each usage line.

    The file is read in batches (~64 MB); each batch is validated, checked, written and
    committed with the file's progress (`lines_done`) in one transaction, so memory stays
    bounded and a run killed midway resumes after the last committed line: nothing lost,
    nothing counted twice. The data stays in DuckDB; only the facts the row schema checks
    go to Polars for Pandera. Duplicates and too-late lines are decided once the whole file
    is in (`decide_file`), one pass linear in the file; the file counts as ingested (and its
    days as billable) only after that.
    """
    # event_key: ingest order (earlier runs, files in path order, lines in order)
    base = scalar(con, "select coalesce(max(event_key), 0) from events")
    batches = _Batches(
        con,
        path,
        file_id,
        base,
        tz,
        run_id,
        report,
        late_before or date(1, 1, 1),
        (today or date(9999, 12, 30)) + timedelta(days=1),
        duplicate_window_days,
        progress,
    )
    try:
        lines = batches.run(iter_line_chunks(path, fast=fast), skip_lines)
    except FastReadFailed:
        # the plain reader splits the same lines (no carriage return in the file): go on
        # after the last committed one
        fast = False
        lines = batches.run(iter_line_chunks(path, fast=False), batches.done or skip_lines)
    batches.decide_file(lines, fast)
    progress(f"{path.name}: {lines:,} lines ingested")


@dataclass
class _Batches:
    """The batches of one usage file, each one transaction."""

    con: object
    path: Path
    file_id: int
    base: int  # event_key = base + line_no
    tz: str
    run_id: str
    report: IngestReport
    late_before: date  # lines dated before it are too_late
    last_day: date  # lines dated after it are in_future
    window: int  # days either side within which a repeated event_id is a duplicate
    progress: Callable[[str], None]
    done: int = 0

    def run(self, chunks: Iterator[pa.Table], skip_lines: int) -> int:
        lines = 0
        while True:
            with self.report.timed("read"):
                chunk = next(chunks, None)
            if chunk is None:
                return lines
            lines += chunk.num_rows
            if skip_lines:
                chunk = chunk.filter(pc.greater(chunk["line_no"], skip_lines))
                if chunk.num_rows == 0:
                    continue
            self.con.register("chunk", chunk)
            self.con.execute("begin transaction")
            try:
                self.batch(chunk, lines)  # commits
            except BaseException:
                self.con.execute("rollback")
                raise
            finally:
                self.con.unregister("chunk")
            self.done = lines
            self.progress(f"{self.path.name}: {lines:,} lines read")

    def batch(self, chunk: pa.Table, lines: int) -> None:
        """Validate, check and write one batch, and commit it (the caller began it)."""
        con, report = self.con, self.report
        with report.timed("validate"):
            con.execute(
                "create or replace temp table batch as " + sql("extract_events"),
                {"timestamp_pattern": TIMESTAMP_WITH_OFFSET, "control": CONTROL_CHARACTER},
            )
            # no order needed: a failure's index is mapped back to its line_no below
            checked = con.sql(f"select line_no, {EVENT_CHECKS} from batch").pl()
            failing = failing_rows(checked, "usage")
            failures = pl.DataFrame(
                {
                    "line_no": checked["line_no"].gather(failing["index"]),
                    "reason": failing["reason"],
                }
            )
            del checked
        with report.timed("rate"):
            con.register("batch_failures", failures.to_arrow())
            run_sql(con, "accept_events", {"tz": self.tz, "last_day": self.last_day})
            con.unregister("batch_failures")
        with report.timed("store"):
            run_sql(con, "store_events", {"file_id": self.file_id, "first_key": self.base})
            con.execute(
                "insert into rejected_events select ?, line_no, raw, reason, now(), ? "
                "from batch_rejects order by line_no",
                [str(self.path), self.run_id],
            )
            n_acc = scalar(con, "select count(*) from batch_checked where reason is null")
            n_rej = scalar(con, "select count(*) from batch_rejects")
            con.execute(
                "update ingested_files set lines = ?, lines_done = ?, accepted = accepted + ?, "
                "rejected = rejected + ? where file_id = ?",
                [lines, lines, n_acc, n_rej, self.file_id],
            )
            con.execute("commit")
        # the run report counts a file once, when its last transaction commits
        # (`decide_file`): a resumed file's batches from a killed run are counted then too

    def decide_file(self, lines: int, fast: bool) -> None:
        """The file-wide decisions (duplicates, too late), once its batches are all in.

        One transaction: the lines not accepted leave `events` for `rejected_events` (raw
        text looked up in the file again: they are few) or the duplicate count, and the file
        is marked complete. A run killed before this commit redoes it on resume.
        """
        con, report, file_id = self.con, self.report, self.file_id
        with report.timed("store"):
            con.execute("begin transaction")
            try:
                self.decide_duplicates()
                _store_file_rejects(con, self.path, self.run_id, fast=fast)
                counts = dict(
                    con.execute(
                        "select reason, count(*) from file_decisions group by reason"
                    ).fetchall()
                )
                dups = counts.pop("duplicate", 0)
                n_rej = sum(counts.values())
                first_day = scalar(
                    con, "select min(day) from events where file_id = $f", {"f": file_id}
                )
                con.execute(
                    "update ingested_files set lines = ?, lines_done = ?, "
                    "accepted = accepted - ?, rejected = rejected + ?, "
                    "duplicates = duplicates + ?, earliest_day = ?, complete = true "
                    "where file_id = ?",
                    [lines, lines, dups + n_rej, n_rej, dups, first_day, file_id],
                )
                con.execute("drop table file_decisions")
                con.execute("commit")
            except BaseException:
                con.execute("rollback")
                raise
        self.count_file(first_day)

    def decide_duplicates(self) -> None:
        """`file_decisions` (line_no, reason): this file's lines that are re-deliveries
        (`duplicate`), conflicting copies (`duplicate_conflict`) or `too_late` (§3).

        A copy is compared with every accepted event of the same id whose day lies within
        the window of its own day, earlier files' and this file's earlier lines alike; the
        first ingested copy stands. Only the ids given more than once reach Python; the
        earlier events searched lie within the window of the file's days, so the work does
        not grow with the history."""
        con, w = self.con, timedelta(days=self.window)
        lo, hi = con.execute(
            "select min(day), max(day) from events where file_id = ?", [self.file_id]
        ).fetchone()
        lo = max(lo or self.late_before, self.late_before - w)  # older lines: too_late
        run_sql(
            con,
            "duplicate_candidates",
            {"file_id": self.file_id, "min_day": lo - w, "max_day": (hi or lo) + w},
        )
        copies = con.sql("select * from duplicate_candidates order by event_id, event_key").pl()
        decided = judge_copies(copies, self.file_id, self.window, self.late_before)
        con.register("duplicate_decisions", decided.to_arrow())
        run_sql(con, "dedupe_events", {"file_id": self.file_id, "late_before": self.late_before})
        con.unregister("duplicate_decisions")

    def count_file(self, first_day: date | None) -> None:
        """Add the completed file to the run report: its final counts, and its rejects by
        reason (those of batches a killed run committed included; rejects of an earlier file
        at the same path are older than this file's registration)."""
        con, report = self.con, self.report
        accepted, rejected, dups = con.execute(
            "select accepted, rejected, duplicates from ingested_files where file_id = ?",
            [self.file_id],
        ).fetchall()[0]
        report.events_accepted += accepted
        report.events_rejected += rejected
        report.duplicates += dups
        reasons = con.execute(
            "select reason, count(*) from rejected_events where source_file = ? and "
            "ingested_at >= (select ingested_at from ingested_files where file_id = ?) "
            "group by reason",
            [str(self.path), self.file_id],
        ).fetchall()
        for reason, n in reasons:
            report.rejected_by_reason[reason] = report.rejected_by_reason.get(reason, 0) + n
        report.touch(first_day)


CONTENT = ["customer_key", "account_id", "function", "quantity", "status", "occurred_at"]


def judge_copies(copies: pl.DataFrame, file_id: int, window: int, late_before: date):
    """(line_no, reason) of this file's copies of repeated ids, taken in ingest order
    (`event_key`): a copy within `window` days of an accepted event of its id is a
    `duplicate` of the first such event when its content is the same, else a
    `duplicate_conflict`; a copy with none is accepted (unless too late) and is compared
    with the later ones. `copies` holds only ids given more than once: a few rows."""
    decided: list[tuple[int, str]] = []
    accepted: list[tuple[date, tuple]] = []
    current = None
    for row in copies.iter_rows(named=True):
        if row["event_id"] != current:
            current, accepted = row["event_id"], []
        content = tuple(row[c] for c in CONTENT)
        if row["file_id"] != file_id:  # an earlier file's accepted event
            accepted.append((row["day"], content))
            continue
        first = next((c for d, c in accepted if abs((d - row["day"]).days) <= window), None)
        if first is not None:
            decided.append(
                (row["line_no"], "duplicate" if first == content else "duplicate_conflict")
            )
        elif row["day"] >= late_before:
            accepted.append((row["day"], content))
    return pl.DataFrame(decided, schema={"line_no": pl.Int64, "reason": pl.String}, orient="row")


def _store_file_rejects(con, path: Path, run_id: str, *, fast: bool) -> None:
    """The file-wide decisions' rejected lines, with their raw text from the file."""
    wanted = con.execute(
        "select line_no from file_decisions where reason <> 'duplicate' order by line_no"
    ).fetchall()
    if not wanted:
        return
    numbers = pa.array([n for (n,) in wanted], pa.int64())
    for chunk in iter_line_chunks(path, fast=fast):
        hit = chunk.filter(pc.is_in(chunk["line_no"], value_set=numbers))
        if hit.num_rows:
            con.register("hit", hit)
            con.execute(
                "insert into rejected_events select ?, d.line_no, h.raw, d.reason, now(), ? "
                "from file_decisions as d join hit as h using (line_no) order by d.line_no",
                [str(path), run_id],
            )
            con.unregister("hit")
