"""Usage lines of the inbox accepted into `events`, counted as duplicates, or rejected with
their reason and raw line (billing-rules §3).

Two ways through, with the same results row for row:
- a large file (or one a killed run left half done) is read in batches of about
  CHUNK_BYTES, each one transaction committed with the file's progress, so memory stays
  bounded and a killed run resumes after the last committed line;
- small files are taken together: their lines form one batch, and registering them,
  checking, writing and the file-wide decisions are one transaction, so a file of 50 lines
  costs what its lines cost, not a transaction, a duplicate pass and log lines of its own.
Either way the file-wide decisions (duplicates across the late window, too late) come once
the files' lines are all in, and a file counts as ingested only after them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from tasks import fast_lines
from tasks.day_files import history_events, last_event_key, literal
from tasks.db import execute, frame, run_sql, sql, transaction
from tasks.inbox_files import (
    FastReadFailed,
    LineIndex,
    cut_long_lines,
    group_lines,
    iter_line_chunks,
    lines_at,
    read_ahead,
)
from tasks.validate import (
    CONTROL_CHARACTER,
    EVENT_COLUMNS,
    TIMESTAMP_WITH_OFFSET,
    failing_rows,
    lone_surrogates_escaped,
    quantity_literal,
    strictly_json,
)

if TYPE_CHECKING:
    from tasks.ingest_report import IngestReport

# the columns the row schema checks (tasks/validate.py); the text values stay in DuckDB
EVENT_CHECKS = ", ".join(EVENT_COLUMNS)
# event content compared between two copies of an event_id
CONTENT = ["customer_key", "account_id", "function", "quantity", "status", "occurred_at"]
# a batch's lines (`chunk`) parsed, checked and rated in one statement: their facts
# (sql/extract_events.sql) as `batch` of the business rules (sql/accept_events.sql)
FACTS = sql("extract_events")
CHECKED = (
    f"create or replace temp table batch_checked as\nwith batch as (\n{FACTS}\n)\n"
    f"select * from (\n{sql('accept_events')}\n)"
)
# a large batch's lines of the plain form are read by the compiled scanner
# (tasks/fast_lines.py) and only the others by FACTS: the batch is the union of the two
FACTS_OF_REST = FACTS.replace("    from chunk\n", "    from unscanned\n", 1)
assert FACTS_OF_REST != FACTS
CHECKED_SCANNED = (
    "create or replace temp table batch_checked as\nwith batch as (\n"
    "select line_no, file_id, file_line, true as clean, event_id, customer_id, account_id,\n"
    "    function, cast(cast(quantity_micro as decimal(18, 0)) * 0.000001 as decimal(18, 6))\n"
    "    as quantity, quantity_micro, status, occurred_at_ts\nfrom scanned\nunion all\n"
    "select line_no, file_id, file_line, clean, event_id, customer_id, account_id, function,\n"
    f"    quantity, quantity_micro, status, occurred_at_ts\nfrom (\n{FACTS_OF_REST}\n)\n)\n"
    f"select * from (\n{sql('accept_events')}\n)"
)
SCAN_ROWS = 32_768  # rows per record batch of a batch's table (see in_record_batches)
LONG_LINE_BYTES = 64 << 10  # a line longer than this is scanned alone (in_record_batches)


@dataclass(frozen=True)
class UsageFile:
    """A usage file being ingested: its registration and how to read its lines again."""

    file_id: int
    path: Path
    fast: bool = True  # pyarrow's line reader (False: the plain one, see inbox_files)


def keyed(lines: pa.Table, file_id: int) -> pa.Table:
    """A large file's batch of lines as batch rows: `line_no`, the batch's row key, is the
    line's number (event_key = base + line), and `file_id`, `file_line` say where each came
    from. (Small files' groups are numbered in UsageIngest.small_files.)"""
    n = lines.num_rows
    rows = pa.table(
        {
            "line_no": lines["line_no"],
            "file_id": pa.repeat(file_id, n).cast(pa.int32()),
            "file_line": lines["line_no"],
            "raw": cut_long_lines(lines["raw"]),
            "utf8_ok": lines["utf8_ok"],
        }
    )
    return in_record_batches(rows)


def in_record_batches(rows: pa.Table) -> pa.Table:
    """A batch's table in record batches of SCAN_ROWS rows (slices, not copies): DuckDB
    scans an Arrow table a record batch per thread. A group of 2,000 small files as one
    record batch was checked on one thread (0.22-0.29 s against 0.15-0.17 s), and a large
    file's first batch is one 8 MB block (1M events: validate 1.11-1.21 s against
    1.31-1.54 s with the reader's blocks as they come).

    A line longer than LONG_LINE_BYTES gets a record batch of its own: DuckDB parses a
    vector's JSON lines together, ~16 bytes of memory for each value they hold, so a few
    lines of a few MB holding millions of values each (an extra field of long arrays, a
    26 KB gzip) ran the run out of memory; one at a time they fit."""
    long_rows = np.flatnonzero(
        pc.greater(pc.binary_length(rows["raw"]), LONG_LINE_BYTES)
        .fill_null(False)
        .to_numpy(zero_copy_only=False)
    )
    batches = []
    start = 0
    for end in [*long_rows.tolist(), rows.num_rows]:
        if end > start:
            batches += rows.slice(start, end - start).to_batches(max_chunksize=SCAN_ROWS)
        if end < rows.num_rows:
            batches += rows.slice(end, 1).to_batches()
        start = end + 1
    return pa.Table.from_batches([b for b in batches if b.num_rows], rows.schema)


@dataclass
class UsageIngest:
    """What every usage batch of one ingest pass shares: the connection and the limits."""

    con: object
    tz: str
    run_id: str
    report: IngestReport
    late_before: date  # lines dated before it are too_late
    last_day: date  # lines dated after it are in_future
    window: int  # days either side within which a repeated event_id is a duplicate
    progress: Callable[[str], None]
    done: dict[int, int] = field(default_factory=dict)  # file_id -> lines committed
    # file_id -> an event_key at or below its first event's: the file-wide decisions look
    # for the files' events from there on (events are stored in event_key order, so the
    # history before it is skipped, not scanned); 0 for a resumed file
    first_key: dict[int, int] = field(default_factory=dict)
    # file_id -> where its lines start, from the fast reader's batches (lines_at seeks)
    indexes: dict[int, LineIndex] = field(default_factory=dict)
    scan: bool = False  # large batches' lines of plain form read by tasks/fast_lines.py

    # ------------------------------------------------------------ a large file

    def large_file(self, f: UsageFile, chunk_bytes: int, skip_lines: int = 0) -> None:
        """Batch by batch, each committed with the file's progress; then its decisions."""
        base = last_event_key(self.con)
        # (a resumed file's first batches were written before: their keys are lower)
        self.first_key[f.file_id] = 0 if skip_lines else base + 1
        try:
            lines = self._batches(f, chunk_bytes, base, skip_lines)
        except FastReadFailed:
            # the plain reader splits the same lines (no carriage return in the file): go
            # on after the last committed one
            f = UsageFile(f.file_id, f.path, fast=False)
            lines = self._batches(f, chunk_bytes, base, self.done.get(f.file_id) or skip_lines)
        with transaction(self.con):
            self.decide([f], {f.file_id: lines})
        self.indexes.pop(f.file_id, None)
        self.progress(f"{f.path.name}: {lines:,} lines ingested")

    def _batches(self, f: UsageFile, chunk_bytes: int, base: int, skip: int) -> int:
        """The file's batches after line `skip`, each committed with the file's progress; the
        next one read ahead while this one is checked and stored (closed on any exit: the
        read-ahead stops and the file is closed). Its lines."""
        lines = 0
        index = None
        if f.fast and not f.path.name.endswith(".gz"):
            index = self.indexes[f.file_id] = LineIndex(f.path)
        reader = read_ahead(iter_line_chunks(f.path, chunk_bytes, fast=f.fast))
        with contextlib.closing(reader) as chunks:
            while True:
                with self.report.timed("read"):
                    chunk = next(chunks, None)
                if chunk is None:
                    if index is not None:
                        index.complete = True
                    return lines
                lines += chunk.num_rows
                if index is not None:
                    index.add(chunk)
                if skip:
                    chunk = chunk.filter(pc.greater(chunk["line_no"], skip))
                    if chunk.num_rows == 0:
                        continue
                # a large file's batch rows are numbered by their line: event_key = base + line
                rows = keyed(chunk, f.file_id)
                with transaction(self.con):
                    self._file_batch(f, rows, base, lines)
                self.done[f.file_id] = lines
                self.progress(f"{f.path.name}: {lines:,} lines read")

    def _file_batch(self, f: UsageFile, rows: pa.Table, base: int, lines: int) -> None:
        self.batch(rows, [f], base)
        self.con.execute(
            "update ingested_files set lines = ?, lines_done = ? where file_id = ?",
            [lines, lines, f.file_id],
        )

    # ------------------------------------------------------------ small files

    def small_files(self, register: Callable[[], list[UsageFile]], contents: list[bytes]) -> None:
        """Small files' lines as one batch, then their decisions, in two transactions: the
        files registered (`register`, called in the first), their lines checked and written
        with each file's line count, committed; then the file-wide decisions. A kill between
        the two leaves files that a killed run left half done, which the next run takes one
        by one like a large file: its lines already written, their decisions only. (In one
        transaction, a decision taking out an event written in it made DuckDB's commit
        rewrite the group's rows: 0.19 s per 64 MB group against 0.01 s.)"""
        lines, counts = group_lines(contents)
        n = lines.num_rows
        with transaction(self.con):
            files = register()
            base = last_event_key(self.con)
            self.first_key.update({f.file_id: base + 1 for f in files})
            ids = np.repeat(np.array([f.file_id for f in files], np.int32), counts)
            # one table, not a file at a time (in record batches: DuckDB's threads share them)
            rows = pa.table(
                {
                    "line_no": pa.array(np.arange(1, n + 1, dtype=np.int64)),
                    "file_id": pa.array(ids),
                    "file_line": lines["file_line"],
                    "raw": lines["raw"],
                    "utf8_ok": lines["utf8_ok"],
                }
            )
            rows = in_record_batches(rows)
            self.batch(rows, files, base)
            counted = {f.file_id: c for f, c in zip(files, counts, strict=True)}
            self.con.register("group_files", _files_table(files, counted))
            try:
                self.con.execute(
                    "update ingested_files as f set lines = g.lines, lines_done = g.lines "
                    "from group_files as g where f.file_id = g.file_id"
                )
            finally:
                _unregister(self.con, "group_files")
        with transaction(self.con):
            self.decide(files, counted, rows)
        self.progress(f"{len(files):,} small usage files: {n:,} lines ingested")

    # ------------------------------------------------------------ one batch

    def batch(self, rows: pa.Table, files: list[UsageFile], base: int) -> None:
        """Validate, check, rate and write one batch of rows (no commit: the caller's
        transaction). `rows`: line_no (the batch's row key), file_id, file_line, raw."""
        con, report = self.con, self.report
        con.register("chunk", rows)
        con.register("batch_files", _files_table(files))
        params = {
            "timestamp_pattern": TIMESTAMP_WITH_OFFSET,
            "control": CONTROL_CHARACTER,
            "tz": self.tz,
            "last_day": self.last_day,
        }
        try:
            scanned = None
            if self.scan and fast_lines.takes(rows.num_rows):
                with report.timed("scan"):  # the compiled scanner: the lines of plain form
                    try:
                        scanned, rest = fast_lines.scan_lines(rows)
                    except fast_lines.Unavailable as exc:
                        self.scan = False
                        self.progress(
                            f"the compiled scanner is not available here ({exc}): every "
                            "line takes the exact path (the same answer, slower)"
                        )
            with report.timed("validate"):
                # one pass: every line parsed, its facts checked (`clean`), its business
                # rules applied and rated (issue 16: no second scan of a materialised batch);
                # a large batch's lines of the plain form parsed and typed by the compiled
                # scanner first, the others by FACTS
                if scanned is None:
                    execute(con, CHECKED, params)
                else:
                    con.register(
                        "scanned",
                        pa.Table.from_batches(scanned.to_batches(SCAN_ROWS), scanned.schema),
                    )
                    con.register("unscanned", in_record_batches(rest))
                    try:
                        execute(con, CHECKED_SCANNED, params)
                    finally:
                        _unregister(con, "scanned", "unscanned")
                # (Arrow, not a Python list: a file of bad lines has a million of them)
                unclean = con.sql(
                    "select line_no from batch_checked where not clean"
                ).to_arrow_table()["line_no"]
            # only the lines that failed a check go to Pandera for their reason (most pass):
            # their facts read again, and Pandera names the reasons on a thread while the
            # accepted (clean) events are written, which does not wait for them
            with ThreadPoolExecutor(1, thread_name_prefix="reasons") as pool:
                named = None
                if len(unclean):
                    # (a connection of its own: the run's is busy writing meanwhile)
                    named = pool.submit(_reasons, _cursor(con), rows, unclean, params)
                with report.timed("store"):
                    run_sql(con, "store_events", {"first_key": base})
                with report.timed("reasons"):
                    if named is not None:
                        self._row_schema_reasons(*named.result())
            with report.timed("store"):
                run_sql(con, "store_rejects", {"run_id": self.run_id})
        finally:  # (after a failed statement the connection refuses even this: keep the error)
            _unregister(con, "chunk", "batch_files")

    def _row_schema_reasons(self, facts: pl.DataFrame, failing: pl.DataFrame) -> None:
        """`batch_checked.reason` of the lines that are not clean: the row schema's reason
        (tasks/validate.py `failing_rows` of their facts), which comes first (§3 order).
        Every such line has one (tests/test_validate.py): one without would be neither an
        event nor a reject, so the batch stops instead."""
        con = self.con
        if failing.height != facts.height:
            raise RuntimeError(
                f"{facts.height - failing.height} line(s) failed a check of "
                "sql/extract_events.sql that the row schema (tasks/validate.py) names no "
                "reason for: the two disagree"
            )
        failures = pa.table(
            {
                "line_no": facts["line_no"].gather(failing["index"]).to_arrow(),
                "reason": failing["reason"].to_arrow(),
            }
        )
        con.register("batch_failures", failures)
        try:
            con.execute(
                "update batch_checked as c set reason = f.reason "
                "from batch_failures as f where c.line_no = f.line_no"
            )
        finally:
            con.unregister("batch_failures")

    # ------------------------------------------------------------ file-wide decisions

    def decide(
        self, files: list[UsageFile], lines: dict[int, int], read: pa.Table | None = None
    ) -> None:
        """The file-wide decisions once the files' lines are all in (no commit): duplicates
        and too-late lines leave `events` (for `rejected_events`, raw text from `read`, the
        small files' lines at hand, or looked up in a large file again: they are few, or the
        duplicate count), and each file is complete."""
        con, report = self.con, self.report
        with report.timed("store"):
            con.register("decide_files", _files_table(files, lines))
            first_key = min(self.first_key.get(f.file_id, 0) for f in files)
            try:
                self._decide_duplicates(first_key)
                _store_file_rejects(con, files, self.run_id, self.indexes, read)
                run_sql(con, "complete_files", {"first_key": first_key})
            finally:
                _unregister(con, "decide_files")
        self._count(files)

    def _decide_duplicates(self, first_key: int) -> None:
        """`file_decisions` (file_id, line_no, reason): the files' lines that are
        re-deliveries (`duplicate`), conflicting copies (`duplicate_conflict`) or
        `too_late` (§3).

        A copy is compared with every accepted event of the same id whose day lies within
        the window of its own day, earlier files' and these files' earlier lines alike; the
        first ingested copy stands. Only the ids given more than once reach Python; the
        earlier events searched lie within the window of the files' days, so the work does
        not grow with the history."""
        con, w = self.con, timedelta(days=self.window)
        lo, hi = con.execute(
            "select min(day), max(day) from events "
            "where event_key >= $first_key and file_id in (select file_id from decide_files)",
            {"first_key": first_key},
        ).fetchall()[0]
        earliest = self.late_before - w if self.late_before > date(2000, 1, 1) else date.min
        lo = max(lo or earliest, earliest)  # lines older than the window are too_late
        hi = hi or lo
        min_day = lo - w if lo > date(2000, 1, 1) else date.min
        max_day = hi + w if hi < date(9000, 1, 1) else date.max
        history_events(con, min_day, max_day)
        # the files' own events lie at and after first_key, unless one was resumed (0)
        before_key = first_key if first_key > 0 else (1 << 62)
        run_sql(
            con,
            "duplicate_candidates",
            {
                "min_day": min_day,
                "max_day": max_day,
                "first_key": first_key,
                "before_key": before_key,
            },
        )
        copies = con.sql(
            "select * from duplicate_candidates order by event_id, is_new, event_key"
        ).pl()
        con.register(
            "duplicate_decisions", judge_copies(copies, self.window, self.late_before).to_arrow()
        )
        run_sql(con, "dedupe_events", {"late_before": self.late_before, "first_key": first_key})
        con.unregister("duplicate_decisions")

    def _count(self, files: list[UsageFile]) -> None:
        """Add the completed files to the run report: their final counts, and their rejects
        by reason (those of batches a killed run committed included)."""
        con, report = self.con, self.report
        ids = [f.file_id for f in files]
        accepted, rejected, dups, first_day = con.execute(
            "select sum(accepted), sum(rejected), sum(duplicates), min(earliest_day) "
            "from ingested_files where list_contains(?, file_id)",
            [ids],
        ).fetchone()
        report.events_accepted += accepted or 0
        report.events_rejected += rejected or 0
        report.duplicates += dups or 0
        reasons = con.execute(
            "select r.reason, count(*) from rejected_events as r "
            "join ingested_files as f on r.source_file = f.path "
            "and r.ingested_at >= f.ingested_at "
            "where list_contains(?, f.file_id) group by r.reason",
            [ids],
        ).fetchall()
        for reason, n in reasons:
            report.rejected_by_reason[reason] = report.rejected_by_reason.get(reason, 0) + n
        report.touch(first_day)
        report.files.extend(str(f.path) for f in files)


def line_functions(con):
    """The macros and functions sql/extract_events.sql calls, defined on `con`: its own
    macros; the Python function once per database (its connections share it). `con`."""
    run_sql(con, "ingest_macros")
    # (a catalog query to ask first costs ~20 ms; being told it exists costs nothing)
    for name, function, returns in (
        ("quantity_literal", quantity_literal, "VARCHAR"),  # a line it cannot read: NULL
        ("lone_surrogates_escaped", lone_surrogates_escaped, "VARCHAR"),  # NULL: none there
        ("strictly_json", strictly_json, "BOOLEAN"),  # a trailing comma: false
    ):
        with contextlib.suppress(duckdb.CatalogException, duckdb.NotImplementedException):
            con.create_function(  # NULL in, NULL out
                name,
                function,
                ["VARCHAR"],
                returns,
                null_handling="special",
                side_effects=False,
            )
    return con


def _cursor(con):
    """A connection of its own to `con`'s database, for another thread, with the session's
    time zone (a cursor starts in the machine's) and the line functions."""
    [(zone,)] = con.execute("select current_setting('TimeZone')").fetchall()
    cur = con.cursor()
    try:
        cur.execute(f"set TimeZone = {literal(zone)}")
        return line_functions(cur)
    except BaseException:
        cur.close()
        raise


def _reasons(
    cur, rows: pa.Table, unclean: pa.ChunkedArray, params: dict
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The facts of a batch's lines that are not clean, parsed again (few lines: line_no and
    the row schema's columns), and the row schema's `failing_rows` of them; on `cur`, a
    connection of this thread's own (closed here)."""
    try:
        unclean_rows = rows.filter(pc.is_in(rows["line_no"], value_set=unclean))
        cur.register("chunk", in_record_batches(unclean_rows))
        facts = frame(cur, f"select line_no, {EVENT_CHECKS} from ({FACTS})", params)
        return facts, failing_rows(facts, "usage")
    finally:
        cur.close()


def _unregister(con, *names: str) -> None:
    for name in names:
        with contextlib.suppress(duckdb.Error):
            con.unregister(name)


def _files_table(files: list[UsageFile], lines: dict[int, int] | None = None) -> pa.Table:
    """The files of a batch: file_id, path (and, once read to the end, their lines)."""
    table = {
        "file_id": pa.array([f.file_id for f in files], pa.int32()),
        "path": pa.array([str(f.path) for f in files], pa.string()),
    }
    if lines is not None:
        table["lines"] = pa.array([lines[f.file_id] for f in files], pa.int64())
    return pa.table(table)


def judge_copies(copies: pl.DataFrame, window: int, late_before: date) -> pl.DataFrame:
    """(file_id, line_no, reason) of the new files' copies of repeated ids, taken in ingest
    order (earlier files' accepted events first, then `event_key`): a copy within `window`
    days of an accepted event of its id is a `duplicate` of the first such event when its
    content is the same, else a `duplicate_conflict`; a copy with none is accepted (unless
    too late) and is compared with the later ones. `copies` holds only ids given more than
    once: a few rows."""
    decided: list[tuple[int, int, str]] = []
    accepted: list[tuple[date, tuple]] = []
    current = None
    for row in copies.iter_rows(named=True):
        if row["event_id"] != current:
            current, accepted = row["event_id"], []
        content = tuple(row[c] for c in CONTENT)
        if not row["is_new"]:  # an earlier file's accepted event
            accepted.append((row["day"], content))
            continue
        first = next((c for d, c in accepted if abs((d - row["day"]).days) <= window), None)
        if first is not None:
            reason = "duplicate" if first == content else "duplicate_conflict"
            decided.append((row["file_id"], row["line_no"], reason))
        elif row["day"] >= late_before:
            accepted.append((row["day"], content))
    schema = {"file_id": pl.Int32, "line_no": pl.Int64, "reason": pl.String}
    return pl.DataFrame(decided, schema=schema, orient="row")


def _store_file_rejects(
    con,
    files: list[UsageFile],
    run_id: str,
    indexes: dict[int, LineIndex],
    read: pa.Table | None = None,
) -> None:
    """The lines the file-wide decisions rejected, with their raw text: small files' from
    the lines of theirs still at hand (`read`: file_id, file_line, raw), a large file's read
    again from it (`_rejected_lines`)."""
    lines = read if read is not None else _rejected_lines(con, files, indexes)
    con.register("decided_lines", lines.select(["file_id", "file_line", "raw"]))
    try:
        con.execute(
            "insert into rejected_events select f.path, d.line_no, h.raw, d.reason, now(), "
            "? from file_decisions as d "
            "join decided_lines as h on h.file_id = d.file_id and h.file_line = d.line_no "
            "join decide_files as f on f.file_id = d.file_id "
            "where d.reason <> 'duplicate' order by d.file_id, d.line_no",
            [run_id],
        )
    finally:
        con.unregister("decided_lines")


def _rejected_lines(con, files: list[UsageFile], indexes: dict[int, LineIndex]) -> pa.Table:
    """(file_id, file_line, raw) of the lines the file-wide decisions rejected, read again
    from their files: only the files that have such lines, each by its line index when it
    has one."""
    wanted = con.execute(
        "select file_id, list(line_no order by line_no) from file_decisions "
        "where reason <> 'duplicate' group by file_id"
    ).fetchall()
    by_id = {f.file_id: f for f in files}
    found = []
    for file_id, numbers in wanted:
        f = by_id[file_id]
        hit = lines_at(f.path, numbers, fast=f.fast, index=indexes.get(file_id))
        ids = pa.array([file_id] * hit.num_rows, pa.int32())
        found.append(pa.table({"file_id": ids, "file_line": hit["line_no"], "raw": hit["raw"]}))
    schema = pa.schema([("file_id", pa.int32()), ("file_line", pa.int64()), ("raw", pa.string())])
    return pa.concat_tables(found) if found else schema.empty_table()
