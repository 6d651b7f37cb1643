"""The documents stage: statement documents (HTML and CSV) and daily suspension lists (CSV)
under <data-dir>/out, from the warehouse.

The pieces: documents_data (what the documents show, read from the warehouse),
documents_charts (each statement's SVG chart), documents_page (a statement as its page, from
templates/statement.html.j2, and its CSV), documents_files (safe file names, CSV cells,
atomic writes), documents_format (the texts of numbers, months and codes)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl

from tasks.db import execute, transaction
from tasks.documents_data import (
    SUSPENSION_COLUMNS,
    key_batches,
    statement_data,
    suspension_list_rows,
)
from tasks.documents_files import (
    HASH_DIGITS_WHEN_SHARED,
    csv_text,
    is_device_name,
    is_shared_name,
    retired_stems,
    safe_file_stem,
    safe_file_stems,
    write_atomic,
)
from tasks.documents_page import statement_csv, statement_html, write_pages
from tasks.settings import Settings

__all__ = [  # the names callers of this module use (the pipeline, bench, flows/report.py)
    "DOCUMENT_STEPS",
    "DocumentsWritten",
    "default_workers",
    "file_stem",
    "statement_csv",
    "statement_data",
    "statement_html",
    "write_atomic",
    "write_documents",
    "write_statements",
    "write_suspension_list",
]

WRITERS = 4  # threads that write statements: 4 overlap the file system's waits (8 gain nothing)
PER_WORKER_MIN = 500  # statements below which a further thread does not pay for itself
# statements made and written at a time: their data, pages and charts are held in memory
# (a month of a million customers at once outgrew 23 GB)
BATCH = 20_000
file_stem = safe_file_stem  # the name bench/documents_bench.py and older callers know
# a page under a 32-digit name (documents_files.is_shared_name)
SHARED_PAGE = rf"~[0-9a-f]{{{HASH_DIGITS_WHEN_SHARED}}}\.html$"
# the documents stage's steps, timed apart in the run report (RunReport.seconds)
DOCUMENT_STEPS = ("final documents", "month-to-date documents", "suspension lists")


@dataclass
class DocumentsWritten:
    """What a documents stage wrote: the files, how many statements of each kind, seconds
    per step (DOCUMENT_STEPS)."""

    paths: list[Path] = field(default_factory=list)
    finals: int = 0
    month_to_date: int = 0
    lists: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


def write_documents(
    con,
    out_dir: Path,
    days: list[date],
    *,
    tz: str | None = None,
    workers: int | None = None,
    month_to_date: bool = False,
) -> DocumentsWritten:
    """The documents of the billed days (interfaces.md, Data dir): the final statements of
    their months not written yet or revised since (recorded in written_documents), every
    month-to-date statement of those months when `month_to_date` asks for them, and each
    billed day's suspension list."""
    tz = tz or Settings().billing_tz
    out_dir = Path(out_dir)
    days = sorted(set(days))
    months = sorted({d.replace(day=1) for d in days})
    done = DocumentsWritten()
    # a month has final statements only once its last day is billed (statement_months.final):
    # a mid-month day looks no further for unwritten ones than that
    finals = [
        m
        for (m,) in con.execute(
            "select month from statement_months where final and month in (select unnest($m))",
            {"m": months},
        ).fetchall()
    ]
    # the file names of every customer of the months written now or holding documents
    # already (a name can change when a customer arrives: renamed_documents, retire_names)
    named = [
        m
        for m in months
        if m in finals or month_to_date or (out_dir / "statements" / f"{m:%Y-%m}").is_dir()
    ]
    stems = month_stems(con, named) if named else {}
    for step, chosen, chosen_months in (
        ("final documents", "unwritten_final", sorted(finals)),
        ("month-to-date documents", "month_to_date", months if month_to_date else []),
    ):
        t = time.perf_counter()
        batches = key_batches(con, chosen_months, chosen, BATCH) if chosen_months else []
        for keys in batches:
            statements = statement_data(con, chosen_months, tz, chosen, keys=keys)
            paths = write_statements(
                con, out_dir, chosen_months, tz, workers, statements=statements, stems=stems
            )
            record_written(con, statements, [p.relative_to(out_dir) for p in paths])
            done.paths += paths
            if chosen == "month_to_date":
                done.month_to_date += len(statements)
            else:
                done.finals += len(statements)
        done.seconds[step] = time.perf_counter() - t
    t = time.perf_counter()  # (rare: timed with the final documents)
    _write_renamed(con, out_dir, tz, stems, done)
    retire_names(out_dir, stems)
    done.seconds["final documents"] += time.perf_counter() - t
    t = time.perf_counter()
    done.paths += [write_suspension_list(con, out_dir, d) for d in days]
    done.lists = len(days)
    done.seconds["suspension lists"] = time.perf_counter() - t
    return done


def _write_renamed(con, out_dir: Path, tz: str, stems: dict, done: DocumentsWritten) -> None:
    """The documents of each customer whose name (stems) is not the one they were last
    written under (another customer came whose 10-digit name is the same, or left): written
    again under the new name and recorded, then the files under the old name removed (unless
    a customer of the month has that name now). A reader finds the statement under one name
    or the other at every moment."""
    for key, month, old in renamed_documents(con, stems):
        statements = statement_data(con, [month], tz, "customer", customer_key=key)
        if statements:
            paths = write_statements(
                con, out_dir, [month], tz, 1, statements=statements, stems=stems
            )
            record_written(con, statements, [p.relative_to(out_dir) for p in paths])
            done.paths += paths
            if statements[0]["status"] == "month_to_date":
                done.month_to_date += 1
            else:
                done.finals += 1
        if Path(old).stem not in stems[month].values():
            for ext in (".html", ".csv"):
                (out_dir / old).with_suffix(ext).unlink(missing_ok=True)


def renamed_documents(con, stems: dict[date, dict[str, str]]) -> list[tuple[int, date, str]]:
    """(customer_key, month, page) of each customer of the months of `stems` whose documents
    (written_documents: the page, under <out>) lie under another name than stems gives it.
    Only names that can change are looked at: those of ids with a 32-digit name now
    (safe_file_stems), and pages written under such a name."""
    if not stems:
        return []
    shared = [  # (and device names: plain until this engine, hashed since)
        c
        for names in stems.values()
        for c, stem in names.items()
        if is_shared_name(stem) or is_device_name(c)
    ]
    rows = execute(
        con,
        "select customer_key, customer_id, month, path from written_documents "
        "where month in (select unnest($months)) "
        "and (customer_id in (select unnest($ids)) or regexp_matches(path, $shared))",
        {"months": list(stems), "ids": shared, "shared": SHARED_PAGE},
    ).fetchall()
    return [
        (key, month, path)
        for key, customer_id, month, path in rows
        if customer_id in stems.get(month, {})
        and path != f"statements/{month:%Y-%m}/{stems[month][customer_id]}.html"
    ]


def retire_names(out_dir: Path, stems: dict[date, dict[str, str]]) -> None:
    """Remove, in each month's folder, the documents under a name none of the month's
    customers has now (retired_stems): a 10-digit name two of them share, whose document was
    written for one of them before the other came (a month-to-date one, or a final one that
    late data's new customer reopened), and a device-named id's plain name (written before
    such ids were hashed). Files only where ids meet or were devices: none in a normal
    month."""
    for month, names in stems.items():
        for stem in retired_stems(names):
            for ext in ("html", "csv"):
                (out_dir / "statements" / f"{month:%Y-%m}" / f"{stem}.{ext}").unlink(
                    missing_ok=True
                )


def record_written(con, statements: list[dict], paths: list[Path]) -> None:
    """written_documents: each statement's customer and month, now showing its revision in
    the files `paths` (the page and CSV of each statement, relative to <data-dir>/out)."""
    if not statements:
        return
    pages = [p.as_posix() for p in paths if p.suffix == ".html"]
    rows = pl.DataFrame(
        {
            "customer_key": [s["customer_key"] for s in statements],
            "customer_id": [s["customer_id"] for s in statements],
            "month": [s["month"] for s in statements],
            "revision": [s["revision"] for s in statements],
            "status": [s["status"] for s in statements],
            "fingerprint": [s["fingerprint"] for s in statements],
            "path": pages,
        },
        schema={
            "customer_key": pl.Int32,
            "customer_id": pl.String,
            "month": pl.Date,
            "revision": pl.Int32,
            "status": pl.String,
            "fingerprint": pl.String,
            "path": pl.String,
        },
    )
    con.register("documents_now", rows)
    try:
        with transaction(con):
            con.execute(
                "delete from written_documents as w using documents_now as n "
                "where w.customer_key = n.customer_key and w.month = n.month"
            )
            con.execute("insert into written_documents select *, now() from documents_now")
            con.execute(  # for the published copy (tasks/keyed_files.py)
                "insert or replace into keyed_changes select distinct 'written_documents', "
                "month, customer_key, false from documents_now"
            )
    finally:
        con.unregister("documents_now")


def write_suspension_list(con, out_dir: Path, day: date) -> Path:
    """<out>/suspensions/YYYY-MM-DD.csv: who to suspend, who to reinstate, who to warn."""
    rows = suspension_list_rows(con, day)
    return write_atomic(
        out_dir / "suspensions" / f"{day.isoformat()}.csv", csv_text(SUSPENSION_COLUMNS, rows)
    )


def write_statements(
    con,
    out_dir: Path,
    months: list[date],
    tz: str,
    workers: int | None = None,
    *,
    statements: list[dict] | None = None,
    stems: dict[date, dict[str, str]] | None = None,
) -> list[Path]:
    """<out>/statements/YYYY-MM/<stem>.html and .csv (stem: safe_file_stems of the month's
    customer ids) for the `statements` given (default: every statement of the months),
    rendered and written by `workers` threads (default WRITERS; one per PER_WORKER_MIN
    statements at most). Returns each statement's page and CSV, in the statements' order.
    Files under a name the customers no longer have are the caller's (retire_names)."""
    if statements is None:
        statements = statement_data(con, months, tz)
    if not statements:
        return []
    months = sorted({s["month"] for s in statements})
    # names unique among every customer of the month, not only those written now
    stems = stems or month_stems(con, months)
    for s in statements:
        s["file_stem"] = stems[s["month"]][s["customer_id"]]
    folders = {m: out_dir / "statements" / f"{m:%Y-%m}" for m in months}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    plain = {m: str(f) for m, f in folders.items()}
    workers = min(workers or default_workers(), len(statements) // PER_WORKER_MIN)
    if workers > 1:
        _in_threads(statements, plain, workers)
    else:
        write_pages(statements, plain)
    return [
        folders[s["month"]] / f"{s['file_stem']}.{ext}"
        for s in statements
        for ext in ("html", "csv")
    ]


def month_stems(con, months: list[date]) -> dict[date, dict[str, str]]:
    """Per month, each of its customers' file stem (safe_file_stems of the month's ids)."""
    return {
        m: safe_file_stems(ids)
        for m, ids in con.execute(
            "select month, list(distinct customer_id) from statements "
            "where list_contains(?, month) group by month",
            [months],
        ).fetchall()
    }


def _in_threads(statements: list[dict], folders: dict[date, str], workers: int) -> None:
    """write_pages for `workers` consecutive parts of the statements, each in a thread.

    Threads, not processes: the stage waits on the file system (a file written and renamed
    over the day before's takes far longer than its page takes to render, and a thread waiting
    on it lets the others run), and a thread needs its part neither copied nor pickled
    (docs/decisions.md, Documents). Every part is written, then the first error is raised."""
    size = -(-len(statements) // workers)
    parts = [statements[i : i + size] for i in range(0, len(statements), size)]
    with ThreadPoolExecutor(len(parts), thread_name_prefix="documents") as pool:
        started = [pool.submit(write_pages, part, folders) for part in parts]
    for future in started:
        future.result()


def default_workers() -> int:
    """Threads that write the statements."""
    return WRITERS
