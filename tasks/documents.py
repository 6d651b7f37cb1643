"""The documents stage: statement documents (HTML and CSV) and daily suspension lists (CSV)
under <data-dir>/out, from the warehouse.

The pieces: documents_data (what the documents show, read from the warehouse),
documents_charts (each statement's SVG chart), documents_page (a statement as its page, from
templates/statement.html.j2, and its CSV), documents_files (safe file names, CSV cells,
atomic writes), documents_format (the texts of numbers, months and codes)."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path

from tasks.documents_data import SUSPENSION_COLUMNS, statement_data, suspension_list_rows
from tasks.documents_files import csv_text, safe_file_stem, write_atomic
from tasks.documents_page import statement_csv, statement_html, write_pages
from tasks.settings import Settings

__all__ = [  # the names callers of this module use (the pipeline, bench, flows/report.py)
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

PER_WORKER_MIN = 500  # statements below which a further process does not pay for itself
file_stem = safe_file_stem  # the name bench/documents_bench.py and older callers know


def write_documents(
    con, out_dir: Path, days: list[date], *, tz: str | None = None, workers: int | None = None
) -> list[Path]:
    """Write the statements of the billed days' months and each billed day's suspension list."""
    tz = tz or Settings().billing_tz
    out_dir = Path(out_dir)
    days = sorted(set(days))
    months = sorted({d.replace(day=1) for d in days})
    written = write_statements(con, out_dir, months, tz, workers) if months else []
    written += [write_suspension_list(con, out_dir, d) for d in days]
    return written


def write_suspension_list(con, out_dir: Path, day: date) -> Path:
    """<out>/suspensions/YYYY-MM-DD.csv: who to suspend, who to reinstate, who to warn."""
    rows = suspension_list_rows(con, day)
    return write_atomic(
        out_dir / "suspensions" / f"{day.isoformat()}.csv", csv_text(SUSPENSION_COLUMNS, rows)
    )


def write_statements(
    con, out_dir: Path, months: list[date], tz: str, workers: int | None = None
) -> list[Path]:
    """<out>/statements/YYYY-MM/<stem>.html and .csv (stem: safe_file_stem of the customer id)
    for every statement of the months, rendered and written by `workers` processes (default:
    up to 2, one per CPU; one per PER_WORKER_MIN statements at most)."""
    statements = statement_data(con, months, tz)
    folders = {m: out_dir / "statements" / f"{m:%Y-%m}" for m in months}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    plain = {m: str(f) for m, f in folders.items()}
    workers = min(workers or default_workers(), len(statements) // PER_WORKER_MIN)
    if workers > 1:
        _in_processes(statements, plain, workers)
    else:
        write_pages(statements, plain)
    return [
        folders[s["month"]] / f"{safe_file_stem(s['customer_id'])}.{ext}"
        for s in statements
        for ext in ("html", "csv")
    ]


def _in_processes(statements: list[dict], folders: dict[date, str], workers: int) -> None:
    """write_pages for `workers` consecutive parts of the statements: the first here, each
    other one in a worker process.

    The workers are started by a fork server, not forked from this process (which holds
    DuckDB's and Prefect's threads and locks); they get their part as plain data and load
    only the page's modules (no DuckDB, Polars or Prefect)."""
    size = -(-len(statements) // workers)
    parts = [statements[i : i + size] for i in range(0, len(statements), size)]
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(len(parts) - 1, mp_context=context) as pool:
        started = [pool.submit(write_pages, part, folders) for part in parts[1:]]
        write_pages(parts[0], folders)
        errors = [f.exception() for f in started]
    if error := next((e for e in errors if e is not None), None):
        raise RuntimeError(
            f"Writing statement documents failed in a worker process "
            f"({type(error).__name__}: {error}); fix the cause and run the billing again."
        ) from error


def default_workers() -> int:
    """Processes for the statements: up to 2, one per CPU this process may use."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(2, cpus or 1))
