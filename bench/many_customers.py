"""One bench day billed among many customers, most of them quiet (issue 13: a quiet customer
costs close to nothing), timed on copies of one billed state.

    uv run python bench/many_customers.py --customers 1000000 --active 10000
        [--events 1000000] [--day 2] [--repeat 3] [--workdir bench/data] [--out FILE]

Run it twice, with the same --events and --day, to compare (docs/performance.md): once with
a million customers of whom 10,000 use the service, once with `--customers 10000`.

bench/run.py copies its saved state whole for every timed run; a million customers' state
holds millions of statement documents, too many to copy each time. So here the state is
billed once, on `<workdir>/<key>/many/billed` (the warm-up, then the bench days before
--day, one run each), and every timed run starts from a fresh copy of it in
`<workdir>/<key>/many/run`: the database copied, the day files (`state/days`) and the
documents (`out/`) hard-linked (the engine replaces such files by rename, never in place, so
the kept state is never written through a link), the inbox copied (a hard link is turned
away, billing-rules §3). Before each timed run, an untimed run through the day before (it
finds nothing new) and a wait for a quiet machine; then --day's files are delivered and
billed in a process of its own (bench/billrun.py). The billed state is kept for the next
invocation with the same parameters and engine version (--rebill starts it again).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import inbox  # noqa: E402
from run_machine import engine_version, git_head, machine, say, wait_quiet  # noqa: E402
from run_stages import stages_of  # noqa: E402
from run_states import billrun, clone_state, link_inbox, restore  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, required=True)
    ap.add_argument("--active", type=int, default=None, help="customers using the service")
    ap.add_argument("--events", type=int, default=1_000_000, help="usage events a day")
    ap.add_argument("--day", type=int, default=2, help="the bench day timed (0: the first)")
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="timed runs (the median reported); 0: bill the state only",
    )
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--workdir", type=Path, default=HERE / "data")
    ap.add_argument("--out", type=Path, default=None, help="the result as JSON")
    ap.add_argument("--quiet-wait", type=float, default=120.0, help="seconds, before each run")
    ap.add_argument("--rebill", action="store_true", help="bill the kept state again")
    args = ap.parse_args(argv)
    if args.day < 1:
        ap.error("--day must be 1 or later: the timed day needs a billed day before it")
    return args


def copy_state(billed: Path, run_dir: Path) -> None:
    """A fresh data dir at run_dir from the billed one: the database copied, day files and
    documents hard-linked, the inbox copied (with the same stat: known files are skipped)."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    clone_state(billed / "state", run_dir / "state")
    if (billed / "out").is_dir():
        clone_state(billed / "out", run_dir / "out")
    shutil.copytree(billed / "inbox", run_dir / "inbox")
    os.sync()


def bill_state(args: argparse.Namespace, src: Path, plan, billed: Path) -> None:
    """The warm-up and the bench days before --day, one run each, on `billed`."""
    restore(billed, None, src, inbox.warmup_files(src, plan))
    r = billrun(billed, inbox.day_of(-1))
    say(f"warm-up: {r['summary']['days_billed']} days in {r['wall_seconds']:.1f} s")
    for d in range(args.day):
        link_inbox(billed, src, inbox.day_files(src, plan, d))
        r = billrun(billed, inbox.day_of(d))
        say(f"bench day {d} ({inbox.day_of(d)}): {r['wall_seconds']:.1f} s")
    (billed / "BILLED").write_text(engine_version())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    key = inbox.src_key(
        args.workdir.absolute(), args.customers, args.events, args.seed, args.active
    )
    src, many = key / "src", key / "many"
    plan = inbox.make_plan(args.customers, args.events, args.seed, active=args.active)
    t = time.perf_counter()
    files = inbox.day_files(src, plan, args.day)
    inbox.warmup_files(src, plan)
    for d in range(args.day):
        inbox.day_files(src, plan, d)
    say(f"inbox ready under {src} ({time.perf_counter() - t:.1f} s)")
    billed, run_dir = many / "billed", many / "run"
    marker = billed / "BILLED"
    if args.rebill or not marker.exists() or marker.read_text() != engine_version():
        bill_state(args, src, plan, billed)
    day, before = inbox.day_of(args.day), inbox.day_of(args.day - 1)
    runs = []
    for i in range(args.repeat):
        copy_state(billed, run_dir)
        settle = billrun(run_dir, before)
        others = wait_quiet(args.quiet_wait)
        link_inbox(run_dir, src, files)
        os.sync()
        r = billrun(run_dir, day)
        stages = stages_of(r)
        say(
            f"{day} run {i + 1}/{args.repeat}: {r['wall_seconds']:.2f} s "
            f"(cpu {r['cpu_seconds']:.1f} s, others' cpu {r['others_cpu_seconds']:.1f} s; "
            f"the untimed run before it {settle['wall_seconds']:.1f} s), "
            f"peak RSS {r['peak_rss_bytes'] / 2**30:.2f} GiB"
        )
        runs.append(
            {
                "wall_seconds": r["wall_seconds"],
                "cpu_seconds": r["cpu_seconds"],
                "others_cpu_seconds": r["others_cpu_seconds"],
                "others_cores_before": others,
                "peak_rss_gib": r["peak_rss_bytes"] / 2**30,
                "stages": {k: round(v, 3) for k, v in stages.items()},
                "events_accepted": r["summary"]["events_accepted"],
            }
        )
    shutil.rmtree(run_dir, ignore_errors=True)
    if not runs:  # --repeat 0: the state billed (or kept) only
        say(f"billed state kept under {billed}")
        return 0
    walls = [r["wall_seconds"] for r in runs]
    result = {
        "customers": args.customers,
        "active": args.active or args.customers,
        "events": args.events,
        "day": str(day),
        "median_wall_seconds": statistics.median(walls),
        "runs": runs,
        "engine": engine_version(),
        "git": git_head(),
        "machine": machine(),
    }
    print(f"{day}: median {result['median_wall_seconds']:.2f} s (runs {walls})")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
