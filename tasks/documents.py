"""The documents stage: statement documents (HTML and CSV) and daily suspension lists (CSV)
under <data-dir>/out, from the warehouse.

The pieces: documents_data (what the documents show, read from the warehouse),
documents_charts (each statement's SVG chart), documents_page (a statement as its page, from
templates/statement.html.j2, and its CSV), documents_files (safe file names, CSV cells,
atomic writes), documents_format (the texts of numbers, months and codes)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

from tasks.documents_data import SUSPENSION_COLUMNS, statement_data, suspension_list_rows
from tasks.documents_files import csv_text, safe_file_stem, safe_file_stems, write_atomic
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

WRITERS = 4  # threads that write statements: 4 overlap the file system's waits (8 gain nothing)
PER_WORKER_MIN = 500  # statements below which a further thread does not pay for itself
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
    for every statement of the months, rendered and written by `workers` threads (default
    WRITERS; one per PER_WORKER_MIN statements at most)."""
    statements = statement_data(con, months, tz)
    # names unique among every customer of the month, not only those written now
    stems = {
        m: safe_file_stems(ids)
        for m, ids in con.execute(
            "select month, list(distinct customer_id) from statements "
            "where list_contains(?, month) group by month",
            [months],
        ).fetchall()
    }
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
