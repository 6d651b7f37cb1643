"""Inbox files turned into accepted orders and events, and rejects with their reasons (§3)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from tasks.catalog import Catalog
from tasks.db import run_sql, scalar, sql
from tasks.inbox_files import (
    FastReadFailed,
    NotARegularFile,
    UnreadableFile,
    file_digest,
    inbox_files,
    iter_line_chunks,
)
from tasks.ingest_orders import ingest_orders_file
from tasks.pools import rebuild_pools
from tasks.validate import (
    CONTROL_CHARACTER,
    EVENT_COLUMNS,
    TIMESTAMP_WITH_OFFSET,
    failing_rows,
    quantity_literal,
)

CHUNK_BYTES = 64 << 20  # a usage batch: about this many bytes of lines, one transaction


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
        except Exception as exc:
            exc.add_note(f"while ingesting {f.path}")  # the one line names the file
            raise
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
        except Exception as exc:
            exc.add_note(f"while ingesting {f.path}")  # the one line names the file
            raise
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


# ---------------------------------------------------------------- orders


# ---------------------------------------------------------------- usage

# the columns the row schema checks (tasks/validate.py); the text values stay in DuckDB
EVENT_CHECKS = ", ".join(EVENT_COLUMNS)


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
        lines = batches.run(iter_line_chunks(path, CHUNK_BYTES, fast=fast), skip_lines)
    except FastReadFailed:
        # the plain reader splits the same lines (no carriage return in the file): go on
        # after the last committed one
        fast = False
        lines = batches.run(
            iter_line_chunks(path, CHUNK_BYTES, fast=False), batches.done or skip_lines
        )
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
            # only lines that fail a check go to Pandera for their reason (most pass); no
            # order needed: a failure's index is mapped back to its line_no below
            checked = con.sql(f"select line_no, {EVENT_CHECKS} from batch where not clean").pl()
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
        earliest = self.late_before - w if self.late_before > date(2000, 1, 1) else date.min
        lo = max(lo or earliest, earliest)  # lines older than the window are too_late
        run_sql(
            con,
            "duplicate_candidates",
            {
                "file_id": self.file_id,
                "min_day": lo - w if lo > date(2000, 1, 1) else date.min,
                "max_day": (hi or lo) + w if (hi or lo) < date(9000, 1, 1) else date.max,
            },
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
    for chunk in iter_line_chunks(path, CHUNK_BYTES, fast=fast):
        hit = chunk.filter(pc.is_in(chunk["line_no"], value_set=numbers))
        if hit.num_rows:
            con.register("hit", hit)
            con.execute(
                "insert into rejected_events select ?, d.line_no, h.raw, d.reason, now(), ? "
                "from file_decisions as d join hit as h using (line_no) order by d.line_no",
                [str(path), run_id],
            )
            con.unregister("hit")
