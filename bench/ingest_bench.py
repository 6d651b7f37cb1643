"""Usage ingest alone: one day's file of N events ingested after H days of history.

    uv run python bench/ingest_bench.py --events 1000000 [--history 5] [--repeat 3]
                                        [--customers 10000] [--code DIR] [--workdir DIR]

The inbox is bench/inbox.py's (orders before the bench day, then a usage file a day), always
written by this checkout's generator (tasks.synthetic.stream). The history days are ingested
once (not billed) into a saved state; each repeat copies that state and times
`tasks.ingest.ingest_inbox` over the bench day's files (read, validate and rate, reasons,
store — the duplicate check over the late window included). `--code DIR` imports the engine
from another checkout (e.g. a `git worktree` of an older commit) to compare the two on the
same machine and data. Prints the median seconds and the steps of the fastest run."""

from __future__ import annotations

import argparse
import inspect
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--customers", type=int, default=10_000)
    ap.add_argument("--history", type=int, default=5, help="days ingested before the timed day")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--code", type=Path, default=HERE.parent, help="checkout to import from")
    ap.add_argument("--workdir", type=Path, default=HERE / "data" / "ingest")
    args = ap.parse_args()
    history, today = write_inbox(args.workdir, args.customers, args.events, args.history)
    use_engine_of(args.code)

    from tasks.catalog import load_catalog  # noqa: PLC0415
    from tasks.db import connect  # noqa: PLC0415
    from tasks.ingest import ingest_inbox  # noqa: PLC0415
    from tasks.settings import DEFAULT_CATALOG  # noqa: PLC0415

    catalog = load_catalog(DEFAULT_CATALOG)
    accepts = inspect.signature(ingest_inbox).parameters

    def ingest(data: Path, files: list[Path]) -> dict:
        for f in files:
            dest = data / "inbox" / f.parent.name / f.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists():  # a copy: a hard link is turned away (billing-rules §3)
                shutil.copy2(f, dest)
        con = connect(data / "state" / "adbill.duckdb")
        con.execute("select 1").fetchall()  # (an older engine left the schema's result open)
        extra = {"duplicate_window_days": 37} if "duplicate_window_days" in accepts else {}
        t = time.perf_counter()
        report = ingest_inbox(
            con, data / "inbox", catalog, tz="Asia/Shanghai", run_id="bench", **extra
        )
        seconds = time.perf_counter() - t
        con.execute("checkpoint")
        con.close()
        return {"seconds": seconds, "steps": report.seconds, "accepted": report.events_accepted}

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        saved = Path(tmp) / "saved"
        first = ingest(saved, history)
        print(
            f"history: {args.history} day(s), {first['accepted']:,} events, "
            f"{first['seconds']:.1f} s"
        )
        runs = []
        for i in range(args.repeat):
            run = Path(tmp) / f"run-{i}"
            shutil.copytree(saved, run)
            runs.append(ingest(run, history + today))
            print(f"run {i + 1}: {runs[-1]['seconds']:.2f} s ({runs[-1]['accepted']:,} accepted)")
            shutil.rmtree(run)
    best = min(runs, key=lambda r: r["seconds"])
    steps = ", ".join(f"{k} {v:.2f}" for k, v in best["steps"].items())
    print(f"median {statistics.median(r['seconds'] for r in runs):.2f} s; fastest: {steps}")


def write_inbox(workdir: Path, customers: int, events: int, days: int) -> tuple[list, list]:
    """The history's files (warm-up and days 0..days-1) and the bench day's, written by this
    checkout's generator (bench/inbox.py)."""
    sys.path.insert(0, str(HERE))
    import inbox  # noqa: PLC0415

    src = workdir / f"src-{events}-{customers}-v{inbox.version()}"
    plan = inbox.make_plan(customers, events, seed=1)
    history = inbox.warmup_files(src, plan)
    for d in range(days):
        history += inbox.day_files(src, plan, d)
    return history, inbox.day_files(src, plan, days)


def use_engine_of(code: Path) -> None:
    """Import the engine (tasks.*) from the checkout `code` from here on; the inbox was written
    by this checkout's generator, which an older checkout may not have."""
    code = code.resolve()
    if code != HERE.parent.resolve():
        for name in [m for m in sys.modules if m == "tasks" or m.startswith("tasks.")]:
            del sys.modules[name]
    sys.path.insert(0, str(code))


if __name__ == "__main__":
    main()
