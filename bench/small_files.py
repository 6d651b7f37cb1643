"""Many small usage files vs one: the same lines ingested as 1 file and as N files.

    uv run python bench/small_files.py [--events 100000] [--files 2000] [--repeat 3]
                                       [--customers 10000] [--workdir DIR] [--steps] [--killed]

The lines are the first --events of the bench day of bench/inbox.py (tasks.synthetic.stream;
the orders before it are ingested first, untimed). Each repeat times
`tasks.ingest.ingest_inbox` on a fresh copy of that state, once with the lines in one file
and once spread over --files files (in path order), and checks that both give the same
events. Prints the medians and their ratio. `--killed` also times, for the N files, the
run after one killed between a group's lines and its decisions (its files taken out and
ingested again) and checks it gives the same events.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import inbox  # noqa: E402

from tasks.catalog import load_catalog  # noqa: E402
from tasks.db import connect  # noqa: E402
from tasks.ingest import ingest_inbox  # noqa: E402
from tasks.settings import DEFAULT_CATALOG  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--files", type=int, default=2_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--customers", type=int, default=10_000)
    ap.add_argument("--workdir", type=Path, default=HERE / "data" / "small-files")
    ap.add_argument("--steps", action="store_true", help="print each run's ingest steps")
    ap.add_argument(
        "--killed", action="store_true", help="also time the run after a killed one (N files)"
    )
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    src = args.workdir / f"src-{args.events}-{args.customers}-v{inbox.version()}"
    plan = inbox.make_plan(args.customers, args.events, seed=1)
    orders = inbox.warmup_files(src, plan)[:1] + inbox.day_files(src, plan, 0)[:1]
    lines = inbox.day_files(src, plan, 0)[1].read_bytes().splitlines(keepends=True)
    lines = lines[: args.events]
    catalog = load_catalog(DEFAULT_CATALOG)

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        saved = Path(tmp) / "saved"
        for f in orders:
            (saved / "inbox" / "orders").mkdir(parents=True, exist_ok=True)
            shutil.copy(f, saved / "inbox" / "orders" / f.name)
        (saved / "inbox" / "usage").mkdir(parents=True)
        ingest(saved, catalog)  # (the orders before the day, untimed)

        def timed(n_files: int, i: int, killed: bool = False) -> tuple[float, list]:
            run = Path(tmp) / f"run-{n_files}-{i}"
            shutil.copytree(saved, run)
            per = -(-len(lines) // n_files)
            for k in range(n_files):
                part = lines[k * per : (k + 1) * per]
                (run / "inbox" / "usage" / f"u-{k:06d}.jsonl").write_bytes(b"".join(part))
            if killed:
                killed_before_decisions(run, catalog)
            seconds, steps = ingest(run, catalog)
            if args.steps:
                shown = ", ".join(f"{k} {v:.2f}" for k, v in steps.items())
                print(f"  {n_files} file(s): {shown}")
            con = connect(run / "state" / "adbill.duckdb")
            events = con.execute("select event_id, credits from events order by all").fetchall()
            con.close()
            shutil.rmtree(run)
            return seconds, events

        one, many, after_kill = [], [], []
        for i in range(args.repeat):
            s1, e1 = timed(1, i)
            sn, en = timed(args.files, i)
            assert e1 == en, "one file and many files must give the same events"
            one.append(s1)
            many.append(sn)
            shown = ""
            if args.killed:
                sk, ek = timed(args.files, i, killed=True)
                assert ek == en, "the run after a killed one must give the same events"
                after_kill.append(sk)
                shown = f", {args.files} files after a killed run {sk:.2f} s"
            print(f"run {i + 1}: 1 file {s1:.2f} s, {args.files} files {sn:.2f} s{shown}")
    m1, mn = statistics.median(one), statistics.median(many)
    print(f"median: 1 file {m1:.2f} s, {args.files} files {mn:.2f} s: {mn / m1:.2f}x")
    if after_kill:
        mk = statistics.median(after_kill)
        print(f"median: {args.files} files after a killed run {mk:.2f} s: {mk / mn:.2f}x")


def killed_before_decisions(data: Path, catalog) -> None:
    """A run killed once every group's lines are committed, before their decisions (untimed):
    the files are left half done for the next run to take out and ingest again."""
    from tasks.ingest_usage import UsageIngest

    real = UsageIngest.decide

    def dies(self, *args, **kwargs):
        raise KeyboardInterrupt("killed before the decisions")

    UsageIngest.decide = dies
    try:
        ingest(data, catalog)
    except KeyboardInterrupt:
        pass
    finally:
        UsageIngest.decide = real


def ingest(data: Path, catalog) -> tuple[float, dict[str, float]]:
    con = connect(data / "state" / "adbill.duckdb")
    con.execute("select 1").fetchall()
    t = time.perf_counter()
    report = ingest_inbox(con, data / "inbox", catalog, tz="Asia/Shanghai", run_id="bench")
    seconds = time.perf_counter() - t
    con.close()
    return seconds, report.seconds


if __name__ == "__main__":
    main()
