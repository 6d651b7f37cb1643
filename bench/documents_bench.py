"""How long the documents stage takes on a warehouse that already holds statements.

    uv run python bench/documents_bench.py [--db PATH] [--day 2026-11-02] [--repeat 3]
                                           [--workers 2 8] [--compare DIR] [--profile]
                                           [--quiet-wait 60] [--keep DIR]

Copies the warehouse (default: the benchmark's state after a 1M-event day,
/work/benchdata/run/state/adbill.duckdb) into a scratch folder and never opens the original,
then times, for the month of --day: `write_documents` as the pipeline calls it (with its
default writer threads, then with each --workers count of threads, then in one thread; over
the files of the run before, as every later day of a month does), and its pieces in one
thread: the queries and charts of `statement_data`, rendering every page and CSV, and writing
them (into an empty folder, then over the same files again). Each timing starts after
os.sync(), so that it does not pay for the disk work the one before left. Prints wall and
CPU seconds (best and median of --repeat) and the CPU the rest of the machine used meanwhile;
each repeat first waits (up to --quiet-wait s) for the machine to go quiet, as bench/run.py
does. --compare DIR checks that every written file is byte-identical to the same file under
DIR (e.g. the output of an earlier engine, kept with --keep); --profile prints a cProfile of
one `write_documents`.
"""

from __future__ import annotations

import argparse
import cProfile
import filecmp
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from run_machine import busy_seconds, wait_quiet  # noqa: E402

from tasks import documents as D  # noqa: E402
from tasks.db import connect  # noqa: E402

DEFAULT_DB = Path("/work/benchdata/run/state/adbill.duckdb")


def timed(fn) -> tuple[float, float, float, object]:
    """Wall seconds, CPU seconds (this process and its finished children), CPU seconds of
    every other process meanwhile, the result."""
    t0, c0, b0 = time.perf_counter(), _cpu(), busy_seconds()
    out = fn()
    cpu = _cpu() - c0
    return time.perf_counter() - t0, cpu, max(0.0, busy_seconds() - b0 - cpu), out


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def write_all(folder: Path, pages: list[tuple[str, str, str]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, html, text in pages:
        D.write_atomic(folder / f"{stem}.html", html)
        D.write_atomic(folder / f"{stem}.csv", text)


def compare(out: Path, ref: Path) -> tuple[int, list[str]]:
    """How many files were compared and which differ from (or are missing in) the reference."""
    names, bad = 0, []
    for path in sorted(out.rglob("*")):
        if path.is_file():
            names += 1
            other = ref / path.relative_to(out)
            if not other.exists() or not filecmp.cmp(path, other, shallow=False):
                bad.append(str(path.relative_to(out)))
    return names, bad


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", type=Path, default=DEFAULT_DB)
    ap.add_argument("--day", type=date.fromisoformat, default=date(2026, 11, 2))
    ap.add_argument("--tz", default="Asia/Shanghai")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quiet-wait", type=float, default=60.0)
    ap.add_argument("--compare", type=Path, default=None)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--keep", type=Path, default=None, help="copy the output here at the end")
    ap.add_argument(
        "--workers",
        type=int,
        nargs="*",
        default=[2, 8],
        help="further writer thread counts to time write_documents with",
    )
    return ap.parse_args()


class Pieces:
    """Each piece's (wall, CPU, others' CPU) per round."""

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple[float, float, float]]] = {}

    def measure(self, name: str, fn):
        os.sync()  # the disk's work left by the piece before (writeback, discards) done first
        wall, cpu, others, out = timed(fn)
        self.rows.setdefault(name, []).append((wall, cpu, others))
        return out

    def print_table(self) -> None:
        print(
            f"| {'piece':<40} | {'wall best':>9} | {'wall median':>11} | {'CPU median':>10} "
            f"| {'others CPU':>10} |"
        )
        print(f"|{'-' * 42}|{'-' * 10}:|{'-' * 12}:|{'-' * 11}:|{'-' * 11}:|")
        for name, xs in self.rows.items():
            walls = [w for w, _, _ in xs]
            cpus = [c for _, c, _ in xs]
            others = [o for _, _, o in xs]
            print(
                f"| {name:<40} | {min(walls):>9.3f} | {statistics.median(walls):>11.3f} "
                f"| {statistics.median(cpus):>10.3f} | {statistics.median(others):>10.3f} |"
            )


def one_round(con, args, pieces: Pieces, out: Path, folder: Path) -> tuple[list, list]:
    """write_documents at each thread count, then its pieces one by one; the statements and
    files of the round."""
    month, workers = args.day.replace(day=1), D.default_workers()
    # write_documents first: the pieces below churn the disk (20,000 files made, deleted)
    wait_quiet(args.quiet_wait)
    written = pieces.measure(
        f"write_documents, {workers} threads (default)",
        lambda: D.write_documents(con, out, [args.day], tz=args.tz),
    )
    for k in [*args.workers, 1]:
        wait_quiet(args.quiet_wait)
        pieces.measure(
            f"write_documents, {k} thread{'s' if k > 1 else ''}",
            lambda k=k: D.write_documents(con, out, [args.day], tz=args.tz, workers=k),
        )
    data = pieces.measure(
        "queries and charts (statement_data)", lambda: D.statement_data(con, [month], args.tz)
    )
    pages = pieces.measure(
        "render (html + csv), 1 thread",
        lambda: [
            (D.file_stem(s["customer_id"]), D.statement_html(s), D.statement_csv(s)) for s in data
        ],
    )
    pieces.measure("write, new files", lambda: write_all(folder, pages))
    pieces.measure("write, over the same files", lambda: write_all(folder, pages))
    shutil.rmtree(folder)
    return data, written


def afterwards(con, args, out: Path) -> None:
    """--profile, --compare and --keep."""
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        D.write_documents(con, out, [args.day], tz=args.tz, workers=1)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(20)
    if args.compare:
        checked, bad = compare(out, args.compare)
        print(f"\ncompared {checked} files with {args.compare}: {len(bad)} differ")
        for name in bad[:10]:
            print("  differs:", name)
    if args.keep:
        shutil.rmtree(args.keep, ignore_errors=True)
        shutil.copytree(out, args.keep)


def main() -> None:
    args = parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="documents_bench."))
    db = scratch / "adbill.duckdb"
    shutil.copyfile(args.db, db)  # never open the original: other benchmarks use it
    con = connect(db)
    counts = con.execute(
        "select month, count(*) from latest_statements group by 1 order by 1"
    ).fetchall()
    print("statements per month:", ", ".join(f"{m:%Y-%m} {c}" for m, c in counts))
    pieces, out = Pieces(), scratch / "out"
    D.write_documents(con, out, [args.day], tz=args.tz)  # the files a later day writes over
    for i in range(args.repeat):
        data, written = one_round(con, args, pieces, out, scratch / f"write{i}")
    files = len(written.paths)
    print(f"\n{len(data)} statements of {args.day:%Y-%m}, {files} files, {args.repeat} runs")
    print("(write_documents writes over the files of the run before, as each later day does)\n")
    pieces.print_table()
    afterwards(con, args, out)
    con.close()
    shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
