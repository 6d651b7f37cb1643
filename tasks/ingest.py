"""Inbox files turned into accepted orders and events, and rejects with their reasons (§3)."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa

from tasks import fast_lines
from tasks.catalog import Catalog
from tasks.db import scalar, transaction
from tasks.inbox_files import (
    LargerThanItLooked,
    NotARegularFile,
    UnreadableFile,
    file_digest,
    in_threads,
    list_inbox,
    outcome,
    path_text,
    read_as,
    read_whole,
)
from tasks.ingest_orders import ingest_orders_file
from tasks.ingest_report import IngestReport
from tasks.ingest_usage import UsageFile, UsageIngest, line_functions
from tasks.pools import rebuild_pools
from tasks.validate import warm_up_in_background

# a large usage file's batch: about this many bytes of lines, one transaction (a 10M-event
# file's ingest 28.4 and 30.0 s in batches of 128 MB, 30.7 and 34.6 s in 64 MB, the peak
# RSS 1.6 GB vs 1.3 GB; 256 MB no faster: DuckDB's insert costs less per row in larger pieces)
CHUNK_BYTES = 128 << 20
# files up to SMALL_FILE_BYTES are ingested together, GROUP_BYTES (as read) or
# GROUP_FILES at a time: producers' hourly files of a few MB cost what their lines cost (1M
# events as 24 files of 8 MB: 1.4-1.6 x one file, 2.5-4.4 x as a large file each)
SMALL_FILE_BYTES = 16 << 20
# (a group's lines are copied a few times over as they are split: ~5 x this at its peak)
GROUP_BYTES = 64 << 20
GROUP_FILES = 5000
# small usage files' bytes are kept from their digest's read for their lines, up to this
# many bytes in all (2,000 files of 50 lines: each file opened and read once, not twice)
KEEP_BYTES = 128 << 20
# files under this size are digested one after another: for small files two threads contend
# for the GIL (2,000 files of 9.5 KB: 0.17-0.24 s on two threads, 0.04-0.06 s on one)
SERIAL_DIGEST_BYTES = 1 << 20


def _register_file(con, f: InboxFile, kind: str, run_id: str) -> int:
    return _register_files(con, [f], kind, run_id)[0]


def _register_files(con, files: list[InboxFile], kind: str, run_id: str) -> list[int]:
    """ingested_files rows for new files (not complete yet), in one statement; their ids.
    A file's bytes and mtime are those it had when digested (the stat a later run skips it
    by goes with the digest recorded); its content is known by its digest and read_as."""
    first = scalar(con, "select coalesce(max(file_id), 0) + 1 from ingested_files")
    rows = pa.table(
        {
            "file_id": pa.array(range(first, first + len(files)), pa.int32()),
            "path": [str(f.path) for f in files],
            "sha256": [f.sha for f in files],
            "read_as": [f.read_as for f in files],
            "bytes": pa.array([f.size for f in files], pa.int64()),
            "mtime_ns": pa.array([f.mtime_ns for f in files], pa.int64()),
        }
    )
    con.register("new_files", rows)
    con.execute(
        "insert into ingested_files (file_id, path, kind, sha256, read_as, bytes, mtime_ns, "
        "lines, accepted, rejected, duplicates, lines_done, complete, ingested_at, run_id) "
        "select file_id, path, ?, sha256, read_as, bytes, mtime_ns, 0, 0, 0, 0, 0, false, "
        "now(), ? from new_files",
        [kind, run_id],
    )
    con.unregister("new_files")
    return list(range(first, first + len(files)))


@dataclass
class InboxFile:
    """A file to ingest: new, or one a killed run left half done (resume after lines_done)."""

    path: Path
    sha: str
    read_as: str  # orders, usage, usage_gzip (inbox_files.read_as): its content is both
    file_id: int | None = None
    lines_done: int = 0
    has_cr: bool = False  # a carriage return in its bytes: lines split the plain way
    size: int = 0  # bytes on disk, when digested
    mtime_ns: int = 0
    # its bytes, read with its digest (a new small usage file; let go once its lines are read)
    kept: bytes | None = field(default=None, repr=False)


def _new_files(
    con,
    paths: list[Path],
    report: IngestReport,
    turn_away: Callable[[Path, str, str], None],
    *,
    kind: str,
    remember: bool = True,
    digested: dict[Path, tuple[tuple[int, int], tuple]] | None = None,
) -> list[InboxFile]:
    """The files (of this kind: orders, usage) whose content was never fully ingested nor
    turned away; known files are not re-read. Content is the digest and how the file is read
    (`read_as`): the same bytes read another way (renamed .jsonl.gz <-> .jsonl, or a usage
    file the bytes of an orders one) are new. A file that cannot be opened as a regular file
    is turned away here. remember: keep the stat of files recognised by content (False:
    `adbill plan`, which writes nothing). digested: `digest_ahead`'s outcomes, used for files
    whose stat is unchanged."""
    by_stat, complete, partial = _known(con)
    fresh, recognised = [], []
    # the files not known by stat are digested (`_digests`: large ones on threads), their
    # outcomes then taken in path order
    stats: list[tuple[Path, os.stat_result | None, Exception | None]] = []
    for path in paths:
        try:
            st = path.lstat()
        except OSError as exc:
            stats.append((path, None, exc))
            continue
        if (str(path), st.st_size, st.st_mtime_ns) in by_stat:
            report.skipped_files.append(str(path))
            continue
        stats.append((path, st, None))
    # (digested ahead, while the orders were ingested: taken if the file's stat is the same)
    digested = digested or {}
    ahead = {
        path: digested[path][1]
        for path, st, _ in stats
        if st is not None and digested.get(path, (None,))[0] == (st.st_size, st.st_mtime_ns)
    }
    rest = [(path, st.st_size) for path, st, _ in stats if st is not None and path not in ahead]
    digests = {**ahead, **dict(zip([p for p, _ in rest], _digests(rest), strict=True))}
    for path, st, error in stats:
        digest, error = digests.get(path, (None, error))
        if isinstance(error, NotARegularFile):
            turn_away(path, "not_a_regular_file", str(error))
            continue
        if isinstance(error, OSError):
            turn_away(path, "unreadable_file", f"{type(error).__name__}: {error.strerror or error}")
            continue
        if error is not None:
            raise error
        sha, has_cr, kept = digest
        content = (sha, read_as(path, kind))
        if content in complete:
            report.skipped_files.append(str(path))
            recognised.append((str(path), st.st_size, st.st_mtime_ns, *content))
            continue
        complete.add(content)
        fid, done = partial.get(content, (None, 0))
        if fid is not None and st.st_size <= SMALL_FILE_BYTES:
            # a small file a killed run left half done was one of a group written before
            # its decisions: taken out (_purge_partial_files) and ingested again with the
            # files it comes with, as a group decides its copies in ingest order
            fid, done = None, 0
        if fid is not None or st.st_size > SMALL_FILE_BYTES:
            kept = None  # (read batch by batch: its bytes are not what its lines come from)
        fresh.append(
            InboxFile(path, *content, fid, done or 0, has_cr, st.st_size, st.st_mtime_ns, kept)
        )
    if remember:
        _remember_stats(con, recognised)
    return fresh


def _known(con) -> tuple[set, set, dict]:
    """What the data dir knows of inbox files: the (path, bytes, mtime_ns) of files ingested
    whole or recognised by content before, the contents (sha256, read_as) of files complete
    or turned away, and the files a killed run left half done (content -> file_id, lines
    done): a half-done file resumes only when it is read the same way."""
    known = con.execute(
        "select path, bytes, mtime_ns, sha256, read_as, file_id, lines_done, complete "
        "from ingested_files"
    ).fetchall()
    by_stat = {(p, b, m) for p, b, m, *_, done in known if done}
    complete = {(sha, how) for _, _, _, sha, how, *_, done in known if done}
    turned_away = "select sha256, read_as from rejected_files where read_as is not null"
    complete |= set(con.execute(turned_away).fetchall())
    # files recognised by content before under this path and stat (a moved data dir)
    seen = con.execute("select path, bytes, mtime_ns, sha256, read_as from inbox_seen").fetchall()
    by_stat |= {(p, b, m) for p, b, m, sha, how in seen if (sha, how) in complete}
    partial = {(sha, how): (fid, n) for _, _, _, sha, how, fid, n, done in known if not done}
    return by_stat, complete, partial


def not_known(
    paths: list[Path], by_stat: set, listed: dict[Path, tuple[int, int]]
) -> list[tuple[Path, tuple[int, int]]]:
    """The paths not known by their stat, with their (bytes, mtime_ns) as listed (`listed`:
    the listing's stats, taken before any digest, so a file changed since is digested again
    by `_new_files`, which compares them with its own stat after the digest)."""
    return [(path, listed[path]) for path in paths if (str(path), *listed[path]) not in by_stat]


def digest_ahead(todo: list[tuple[Path, tuple[int, int]]]) -> dict:
    """The digests `_new_files` will need for these files (`not_known`'s), computed
    beforehand, on another thread (issue 16: a large usage file's sha256 while the orders
    are ingested): path -> ((bytes, mtime_ns) when digested, file_digest outcome)."""
    outcomes = _digests([(path, key[0]) for path, key in todo], keep_bytes=KEEP_BYTES)
    return {path: (key, out) for (path, key), out in zip(todo, outcomes, strict=True)}


def _digests(files: list[tuple[Path, int]], keep_bytes: int = 0) -> list[tuple]:
    """file_digest outcomes ((Digest, None) or (None, exception)) of (path, size) pairs, in
    their order: files under SERIAL_DIGEST_BYTES one after another on this thread, larger
    ones on threads (hashlib releases the GIL on large buffers). The bytes of small usage
    files are kept, in path order, while keep_bytes lasts."""
    keep = {}
    for path, size in files:
        keep[path] = size if size <= min(keep_bytes, SMALL_FILE_BYTES) else 0
        keep_bytes -= keep[path]

    def digest(path: Path):
        return file_digest(path, keep[path])

    large = [path for path, size in files if size >= SERIAL_DIGEST_BYTES]
    outcomes = dict(zip(large, in_threads(digest, large), strict=True))
    for path, size in files:
        if size < SERIAL_DIGEST_BYTES:
            outcomes[path] = outcome(digest, path)
    return [outcomes[path] for path, _ in files]


def _remember_stats(con, recognised: list[tuple[str, int, int, str, str]]) -> None:
    """The path and stat of files just recognised by their content (`inbox_seen`): the next
    runs skip them by stat, not by hashing them again."""
    if not recognised:
        return
    con.register(
        "recognised",
        pa.table(
            {
                "path": [r[0] for r in recognised],
                "bytes": pa.array([r[1] for r in recognised], pa.int64()),
                "mtime_ns": pa.array([r[2] for r in recognised], pa.int64()),
                "sha256": [r[3] for r in recognised],
                "read_as": [r[4] for r in recognised],
            }
        ),
    )
    try:
        con.execute(
            "insert or replace into inbox_seen (path, bytes, mtime_ns, sha256, read_as, seen_at) "
            "select path, bytes, mtime_ns, sha256, read_as, now() from recognised"
        )
    finally:
        con.unregister("recognised")


def _purge_partial_files(con, keep: set[tuple[str, str]]) -> None:
    """Take out what a killed run committed of the usage files that are not resumed: no
    longer in the inbox as they were (removed, replaced by other content, or renamed to be
    read another way), or small (ingested again whole, `_new_files`): half a file is never
    billed. keep: the (sha256, read_as) of the files resumed."""
    stale = con.execute(
        "select file_id, sha256, read_as from ingested_files where not complete"
    ).fetchall()
    _forget_files(con, [fid for fid, sha, how in stale if (sha, how) not in keep])


def _forget_files(con, file_ids: list[int]) -> None:
    """Delete these files' accepted events, rejected lines and registration, in one
    transaction, set-based (a group of thousands of small files killed before its decisions
    took 5.3-6.1 s one transaction a file, 0.03 s so)."""
    if not file_ids:
        return
    with transaction(con):
        con.execute(
            "create or replace temp table forgotten_files as "
            "select file_id, path, ingested_at from ingested_files "
            "where file_id in (select unnest($ids))",
            {"ids": file_ids},
        )
        con.execute("delete from events where file_id in (select file_id from forgotten_files)")
        con.execute(
            "delete from rejected_events as r using forgotten_files as f "
            "where r.source_file = f.path and r.ingested_at >= f.ingested_at"
        )
        con.execute(
            "delete from ingested_files where file_id in (select file_id from forgotten_files)"
        )
        con.execute("drop table forgotten_files")


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
    warm_up_in_background()  # Pandera's first-use cost, while the files are listed and digested
    listing = list_inbox(inbox)
    report.ignored_files = [path_text(p) for p in listing.ignored]
    _register_catalog(con, catalog)

    def turn_away(path: Path, reason: str, detail: str, f: InboxFile | None = None) -> None:
        """A whole file rejected (§3 "Files"): listed once in rejected_files, never read."""
        content = (f.sha, f.read_as) if f is not None else None
        if _record_rejected_file(con, path, reason, detail, content, run_id):
            say(f"turned away {path_text(path)}: {reason} ({detail})")
        report.rejected_files.append((path_text(path), reason))

    for path, reason, detail in listing.refused:
        turn_away(path, reason, detail)
    limits = {"late_before": late_before, "today": today}
    with ThreadPoolExecutor(1, thread_name_prefix="digest-ahead") as pool:
        # the usage files are digested while the orders are ingested (hashlib releases the GIL)
        unknown = not_known(listing.usage, _known(con)[0], listing.stats)
        ahead = pool.submit(digest_ahead, unknown)
        # the compiled scanner for a large day's new usage (its kernels load meanwhile;
        # a gzip holds ~8 times its size in lines)
        scan = fast_lines.start(
            sum(size * (8 if p.name.endswith(".gz") else 1) for p, (size, _) in unknown)
        )
        for f in _new_files(con, listing.orders, report, turn_away, kind="orders"):
            try:
                _ingest_orders(con, f, catalog, report, tz=tz, run_id=run_id, limits=limits)
            except UnreadableFile as exc:
                turn_away(f.path, "unreadable_file", str(exc), f)
                continue
            report.files.append(str(f.path))
            say(f"ingested orders {f.path.name}")
        digested = ahead.result()
    fresh = _new_files(con, listing.usage, report, turn_away, kind="usage", digested=digested)
    del ahead, digested  # (the bytes kept with the digests: only the fresh files' from here)
    _purge_partial_files(con, {(f.sha, f.read_as) for f in fresh if f.file_id is not None})
    usage = UsageIngest(
        con,
        tz,
        run_id,
        report,
        late_before or date(1, 1, 1),
        (today or date(9999, 12, 30)) + timedelta(days=1),
        duplicate_window_days,
        say,
        scan=scan,
    )
    _ingest_usage(con, usage, fresh, run_id, turn_away)
    return report


def _register_catalog(con, catalog: Catalog) -> None:
    """The macros and the catalog's products, editions and functions that ingest's SQL reads."""
    line_functions(con)
    con.register("catalog_products", catalog.products().to_arrow())
    con.register("catalog_editions", catalog.editions.to_arrow())
    con.register("catalog_functions", catalog.functions.to_arrow())


def _ingest_orders(
    con,
    f: InboxFile,
    catalog: Catalog,
    report: IngestReport,
    *,
    tz: str,
    run_id: str,
    limits: dict[str, date | None],
) -> None:
    """An orders file and the pools it changes, in one transaction (UnreadableFile: a file
    that cannot be read to its end, nothing of it kept)."""
    try:
        with transaction(con):
            con.execute(
                "delete from ingested_files where sha256 = ? and read_as = ?", [f.sha, f.read_as]
            )
            file_id = _register_file(con, f, "orders", run_id)
            ingest_orders_file(con, f.path, file_id, tz=tz, run_id=run_id, report=report, **limits)
            rebuild_pools(con, catalog, tz=tz, file_id=file_id)
            con.execute("update ingested_files set complete = true where file_id = ?", [file_id])
    except UnreadableFile:
        raise
    except Exception as exc:
        exc.add_note(f"while ingesting {f.path}")  # the one line names the file
        raise


def _ingest_usage(con, usage: UsageIngest, fresh: list[InboxFile], run_id: str, turn_away):
    """Usage files in path order: small ones together, a group at a time (GROUP_BYTES or
    GROUP_FILES), a large one (or one a killed run left half done) batch by batch."""
    small: list[InboxFile] = []
    small_bytes = 0
    for f in fresh:
        if f.file_id is None and f.size <= SMALL_FILE_BYTES:
            small.append(f)
            small_bytes += f.size
            if small_bytes >= GROUP_BYTES or len(small) >= GROUP_FILES:
                _small_files(con, usage, small, run_id, turn_away)
                small, small_bytes = [], 0
            continue
        _small_files(con, usage, small, run_id, turn_away)  # files in path order
        small, small_bytes = [], 0
        _large_file(con, usage, f, run_id, turn_away)
    _small_files(con, usage, small, run_id, turn_away)


def _large_file(con, usage: UsageIngest, f: InboxFile, run_id: str, turn_away) -> None:
    """A large usage file (or one a killed run left half done), batch by batch."""
    file_id = f.file_id or _register_file(con, f, "usage", run_id)
    try:
        usage.large_file(UsageFile(file_id, f.path, not f.has_cr), CHUNK_BYTES, f.lines_done)
    except UnreadableFile as exc:
        # none of its lines billed: what its batches committed is taken out again
        _forget_files(con, [file_id])
        turn_away(f.path, "unreadable_file", str(exc), f)
    except Exception as exc:
        exc.add_note(f"while ingesting {f.path}")  # the one line names the file
        raise


def _small_files(con, usage: UsageIngest, files: list[InboxFile], run_id: str, turn_away):
    """Small usage files together: read (a file that cannot be read to its end is turned
    away), then registered, checked, written and decided in one transaction per group of at
    most GROUP_BYTES as read (gzips decompress: their size on disk does not bound it). A file
    whose lines turn out larger than a group goes batch by batch, in its place."""
    read: list[tuple[InboxFile, bytes]] = []
    held = 0  # the group's bytes as read (a gzip's decompressed: up to GROUP_BYTES each)
    for f in files:
        kept, f.kept = f.kept, None  # (from here only the group holds the file's bytes)
        try:
            with usage.report.timed("read"):
                data = read_whole(f.path, GROUP_BYTES, kept)
        except UnreadableFile as exc:
            turn_away(f.path, "unreadable_file", str(exc), f)
            continue
        except LargerThanItLooked:
            _ingest_group(con, usage, read, run_id)  # files stay in path order
            read, held = [], 0
            _large_file(con, usage, f, run_id, turn_away)
            continue
        if read and held + len(data) > GROUP_BYTES:  # a group holds GROUP_BYTES at most
            _ingest_group(con, usage, read, run_id)
            read, held = [], 0
        read.append((f, data))
        held += len(data)
    _ingest_group(con, usage, read, run_id)


def _ingest_group(con, usage: UsageIngest, read: list[tuple[InboxFile, bytes]], run_id: str):
    if not read:
        return

    def register() -> list[UsageFile]:
        ids = _register_files(con, [f for f, _ in read], "usage", run_id)
        return [UsageFile(i, f.path, fast=False) for i, (f, _) in zip(ids, read, strict=True)]

    try:
        usage.small_files(register, [t for _, t in read])
    except Exception as exc:
        more = f" and {len(read) - 1} more file(s)" if len(read) > 1 else ""
        exc.add_note(f"while ingesting {read[0][0].path}{more}")
        raise


def _record_rejected_file(
    con, path: Path, reason: str, detail: str, content: tuple[str, str] | None, run_id: str
) -> bool:
    """One rejected_files row per file turned away (by content: its (sha256, read_as); or
    by reason and path for a file never read); False when it was listed already."""
    key, how = content or (f"{reason}:{path_text(path)}", None)
    listed = (
        "select count(*) from rejected_files where sha256 = ? and read_as is not distinct from ?"
    )
    if con.execute(listed, [key, how]).fetchone()[0]:
        return False
    con.execute(
        "insert into rejected_files (source_file, reason, detail, ingested_at, run_id, sha256, "
        "read_as) values (?, ?, ?, now(), ?, ?, ?)",
        [path_text(path), reason, detail[:300], run_id, key, how],
    )
    return True
