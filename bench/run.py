"""Benchmark of a billing day: the engine's stages beside the floor of reading the day.

    uv run python bench/run.py --events N [--customers 10000] [--repeat 3] [--history 60]
                               [--late-days k] [--out bench/out/result.json]
                               [--workdir bench/data] [--e2e] [--prefect|--no-prefect]

1. Writes (or reuses, keyed by its parameters, under --workdir) the inbox of bench/inbox.py
   (tasks.synthetic.stream, prices from data/):
   the orders before the bench day and a warm-up day carrying arrears, then the bench day's
   mid-day orders and its N usage events.
2. Warm-up: bills every day before the bench day once (cached per engine version).
3. Floor: DuckDB reads the day's usage file with an explicit schema and groups by customer
   (best of --repeat), in this process.
4. Engine: --repeat times, from the same warmed-up state copied afresh (the database and the
   statements and lists already written, which the run writes over as each later day of a
   month does; os.sync() before the run), a run through the bench
   day (tasks.pipeline.run_billing, the flow's body: ingest the day's files, bill the day,
   publish) in a fresh process (bench/billrun.py), so its peak RSS is its own.
5. The naive per-event deduction beside the engine's (bench/naive.py), Prefect's own start-up
   (the flow on an empty data dir), and with --history H the cost of day H vs day 1, with
   --late-days k a recompute of the last k days after late usage arrives, vs one day.

Prints stage → median seconds, the total, total / floor and the peak RSS; writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import inbox  # noqa: E402
from run_machine import engine_version, git_head, machine, quiet, say  # noqa: E402
from run_stages import (  # noqa: E402
    INGEST_STEPS,
    STAGES,
    end_to_end,
    floor,
    prefect_startup,
    print_table,
    stage_table,
    stages_of,
    timed_runs,
)
from run_states import billrun, link_inbox, restore, save_state  # noqa: E402

__all__ = ["STAGES", "main"]  # STAGES: bench/report.py's labels


@dataclass
class Bench:
    """One benchmark's inbox and states: where they are, the plan, the bench day's files."""

    workdir: Path
    src: Path  # the inbox files, written once
    cache: Path  # the states billed from them, per engine version
    run_dir: Path  # the data dir of every timed run
    plan: inbox.Plan
    days: int  # event days the benchmark needs (history, late days)
    warm_files: list[Path]  # orders before day 0 and the warm-up day
    day_files: list[Path]  # day 0's orders and usage
    warm: Path  # the state billed through the warm-up day

    @property
    def day1(self) -> date:
        return inbox.day_of(0)

    @property
    def last(self) -> date:
        return inbox.day_of(self.days - 1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, required=True, help="usage events of the day")
    ap.add_argument(
        "--customers",
        type=int,
        default=None,
        help="default 10,000; below 100,000 events (smoke sizes) one per 20 events",
    )
    ap.add_argument("--repeat", type=int, default=3, help="timed runs (medians reported)")
    ap.add_argument("--history", type=int, default=0, help="bill H days; compare day H vs 1")
    ap.add_argument(
        "--active",
        type=int,
        default=None,
        help="only this many of the customers use the service (the rest are quiet)",
    )
    ap.add_argument(
        "--mature-base",
        action="store_true",
        help="the customers bought packages every day for a year before day 1, as they go on "
        "doing: day 1 holds as many live packages as the day a year later (--history 366)",
    )
    ap.add_argument("--late-days", type=int, default=0, help="late usage over the last k days")
    ap.add_argument("--late-share", type=float, default=0.01, help="late events per day / N")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", type=Path, default=HERE / "out" / "result.json")
    ap.add_argument("--workdir", type=Path, default=HERE / "data")
    ap.add_argument(
        "--prefect",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="measure Prefect's start-up (default: when --events >= 100000)",
    )
    ap.add_argument("--naive", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--e2e", action="store_true", help="also time `adbill run` end to end")
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=None,
        help="wait up to this many seconds for other processes to go quiet "
        "before each timed run (0: don't; default 120 from 100,000 events on)",
    )
    args = ap.parse_args(argv)
    if args.customers is None:  # tiny runs (CI) stay quick: documents cost per customer
        args.customers = 10_000 if args.events >= 100_000 else max(100, args.events // 20)
    if args.quiet_wait is None:
        args.quiet_wait = 120.0 if args.events >= 100_000 else 0.0
    if args.prefect is None:
        args.prefect = args.events >= 100_000
    return args


def prepare(args: argparse.Namespace) -> Bench:
    """The inbox of event days 0.. and the state billed through the warm-up day, written or
    billed only when not kept from an earlier benchmark."""
    workdir = args.workdir.absolute()
    mature = args.mature_base
    key = inbox.src_key(workdir, args.customers, args.events, args.seed, args.active, mature)
    src, cache = key / "src", key / "states" / engine_version()
    if key.joinpath("states").exists():  # states of older engine versions
        for old in key.joinpath("states").iterdir():
            if old != cache:
                shutil.rmtree(old, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    plan = inbox.make_plan(
        args.customers, args.events, args.seed, active=args.active, mature=mature
    )
    t = time.perf_counter()
    warm_files = inbox.warmup_files(src, plan)
    day_files = inbox.day_files(src, plan, 0)
    say(f"inbox ready under {src} ({time.perf_counter() - t:.1f} s)")
    days = max(args.history, args.late_days, 1)
    b = Bench(
        workdir, src, cache, workdir / "run", plan, days, warm_files, day_files, cache / "warm"
    )
    if not (b.warm / "adbill.duckdb").exists():
        restore(b.run_dir, None, src, warm_files)
        r = billrun(b.run_dir, inbox.day_of(-1))
        save_state(b.run_dir, b.warm)
        say(
            f"warm-up: billed {r['summary']['days_billed']} days before {b.day1} "
            f"in {r['wall_seconds']:.1f} s"
        )
    return b


def day_one(args: argparse.Namespace, b: Bench) -> dict:
    """The floor and the engine on the bench day, and what is measured beside them."""
    usage = [f for f in b.day_files if f.suffix == ".jsonl"]
    fl = floor(usage, max(args.repeat, 1))
    say(f"floor: {fl['seconds']:.3f} s")
    files = b.warm_files + b.day_files
    runs = timed_runs(b.run_dir, b.warm, b.src, files, b.day1, args.repeat, "day 1")
    engine = stage_table(runs)
    engine["final_documents_seconds"] = statistics.median(final_documents(r) for r in runs)
    res: dict = {
        "params": {
            "events": args.events,
            "customers": args.customers,
            "active": args.active,
            "repeat": args.repeat,
            "seed": args.seed,
            "day": b.day1.isoformat(),
            "history": args.history,
            "late_days": args.late_days,
        },
        "machine": machine(),
        "engine_version": {**git_head(), "digest": engine_version()},
        "floor": fl,
        "engine": engine,
        "ratio": engine["total_seconds"] / fl["seconds"],
        "ratio_cpu": engine["cpu_seconds"] / max(fl["cpu_seconds"], 1e-9),
    }
    if args.naive:
        from naive import compare  # noqa: PLC0415

        n = res["naive"] = compare(b.run_dir / "state" / "adbill.duckdb", b.day1)
        say(f"naive {n['naive_seconds']:.2f} s, draw_day {n['engine_draw_day_seconds']:.2f} s")
    if args.prefect:
        res["prefect"] = prefect_startup(b.workdir, b.day1)
    if args.e2e:
        res["e2e"] = end_to_end(b.run_dir, b.warm, b.src, files, b.day1)
    return res


def history_chain(b: Bench) -> tuple[Path, list[dict]]:
    """Bill event days 0..days-2 one daily run at a time; the state before the last day."""
    snap, log = b.cache / f"chain-{b.days}", b.cache / f"chain-{b.days}.json"
    if (snap / "adbill.duckdb").exists() and log.exists():
        return snap, json.loads(log.read_text())
    restore(b.run_dir, b.warm, b.src, inbox.warmup_files(b.src, b.plan))
    series = []
    # the chain's runs are minutes apart, the nights they stand for a day apart: each collects
    # the day files the runs before it replaced, as a run a day later would (kept two hours for
    # readers, tasks/day_files.py collect) — not a year's worth at once on the last day
    kept = os.environ.get("ADBILL_KEEP_OLD_FILES_SECONDS")
    os.environ["ADBILL_KEEP_OLD_FILES_SECONDS"] = "0"
    try:
        _chain(b, series)
    finally:
        os.environ.pop("ADBILL_KEEP_OLD_FILES_SECONDS")
        if kept is not None:
            os.environ["ADBILL_KEEP_OLD_FILES_SECONDS"] = kept
    save_state(b.run_dir, snap)
    log.write_text(json.dumps(series))
    return snap, series


def _chain(b: Bench, series: list[dict]) -> None:
    for d in range(b.days - 1):
        link_inbox(b.run_dir, b.src, inbox.day_files(b.src, b.plan, d))
        r = billrun(b.run_dir, inbox.day_of(d))
        series.append(
            {
                "day": d + 1,
                "wall_seconds": r["wall_seconds"],
                "cpu_seconds": r.get("cpu_seconds"),
                "others_cpu_seconds": r.get("others_cpu_seconds"),
                "peak_rss_bytes": r["peak_rss_bytes"],
                "stage_seconds": stages_of(r),
            }
        )
        say(f"history day {d + 1}/{b.days}: {r['wall_seconds']:.2f} s")


def final_documents(run: dict) -> float:
    """Seconds a run spent writing the final documents of a closed month (timed apart)."""
    return run["summary"].get("document_seconds", {}).get("final documents", 0.0)


def disk_use(run_dir: Path) -> dict:
    """Bytes of the working state (database and day files) and of the published warehouse."""

    def size(p: Path) -> int:
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else 0

    state, days = size(run_dir / "state"), size(run_dir / "state" / "days")
    wh = (run_dir / "warehouse.duckdb").stat().st_size
    return {
        "state_bytes": state,
        "day_files_bytes": days,
        "warehouse_bytes": wh,
        "ratio": (state + wh) / state,
    }


def all_files(b: Bench) -> list[Path]:
    files = inbox.warmup_files(b.src, b.plan)
    for d in range(b.days):
        files += inbox.day_files(b.src, b.plan, d)
    return files


def last_day(args: argparse.Namespace, b: Bench, engine: dict) -> tuple[dict, dict]:
    """The last of --history days billed after the others, against day 1; its result and the
    stage table of its runs (the state after it is kept for the late runs)."""
    before_last, series = history_chain(b)
    files, first_files = all_files(b), b.warm_files + b.day_files
    # day 1 again beside each run of the last day, alternately: the ratio compares runs
    # minutes apart, not day 1 measured before a chain of hours on a shared machine whose
    # speed drifts by more than the target (day 1 ran 2.98-3.24 s at the start of a year's
    # chain and 3.50-4.24 s at its end)
    paired_runs, last_runs = [], []
    for i in range(args.repeat):
        paired_runs += timed_runs(
            b.run_dir, b.warm, b.src, first_files, b.day1, 1, f"day 1 (pair {i + 1})"
        )
        last_runs += timed_runs(
            b.run_dir, before_last, b.src, files, b.last, 1, f"day {b.days} (pair {i + 1})"
        )
    last, paired = stage_table(last_runs), stage_table(paired_runs)
    disk = disk_use(b.run_dir)
    if args.late_days:  # the state the late runs start from
        save_state(b.run_dir, b.cache / f"after-{b.days}")
    # each run's wall time less its own final documents (they vary run to run by seconds on
    # this disk: the median of the differences, not the difference of the medians)
    without = statistics.median(r["wall_seconds"] - final_documents(r) for r in last_runs)
    final_first = engine.get("final_documents_seconds", 0.0)
    paired_without = statistics.median(r["wall_seconds"] - final_documents(r) for r in paired_runs)
    return {
        # the comparison with day 1 run alternately with the last day (the figure to quote)
        "paired": {
            "first_day_seconds": paired["total_seconds"],
            "ratio": last["total_seconds"] / paired["total_seconds"],
            "ratio_without_final_documents": without / paired_without,
            "ratio_cpu": last["cpu_seconds"] / paired["cpu_seconds"],
            "pair_ratios": [
                a["wall_seconds"] / f["wall_seconds"]
                for a, f in zip(last_runs, paired_runs, strict=True)
            ],
            "first_day": paired,
        },
        # against the day 1 runs at the start of the benchmark (before the chain)
        "disk": disk,
        "last_day_without_final_documents_seconds": without,
        "ratio_without_final_documents": without / (engine["total_seconds"] - final_first),
        "days": b.days,
        "first_day_seconds": engine["total_seconds"],
        "last_day_seconds": last["total_seconds"],
        "ratio": last["total_seconds"] / engine["total_seconds"],
        "first_day_cpu_seconds": engine["cpu_seconds"],
        "last_day_cpu_seconds": last["cpu_seconds"],
        "ratio_cpu": last["cpu_seconds"] / engine["cpu_seconds"],
        "last_day": last,
        "series": series,
    }, last


def late_days(args: argparse.Namespace, b: Bench, last: dict) -> dict:
    """Late usage over the last --late-days days, recomputed in one run, against one day."""
    k = args.late_days
    late = b.src / "usage" / f"late-{k}-{args.late_share:g}-{b.last}.jsonl"
    if not late.exists():
        inbox.write_late_usage(late, b.plan, list(range(b.days - k, b.days)), args.late_share)
    after_last, files = b.cache / f"after-{b.days}", [*all_files(b), late]
    lt = stage_table(
        timed_runs(b.run_dir, after_last, b.src, files, b.last, args.repeat, f"late {k} days")
    )
    one = last["total_seconds"]
    billing_one = sum(v for s, v in last["stages"].items() if s not in (*INGEST_STEPS, "orders"))
    return {
        "days": k,
        "late_events": sum(r["events_accepted"] for r in lt["runs"]) // len(lt["runs"]),
        "days_billed": lt["runs"][0]["days_billed"],
        "seconds": lt["total_seconds"],
        "one_day_seconds": one,
        "one_day_billing_only_seconds": billing_one,
        "ratio_to_one_day": lt["total_seconds"] / one,
        "cpu_seconds": lt["cpu_seconds"],
        "one_day_cpu_seconds": last["cpu_seconds"],
        "ratio_cpu": lt["cpu_seconds"] / last["cpu_seconds"],
        "run": lt,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet["wait"] = args.quiet_wait
    started = time.perf_counter()
    b = prepare(args)
    # every bench day has ended (§3: lines dated after today + 1 are in_future); set for the
    # billing processes, which inherit it
    os.environ["ADBILL_TODAY"] = (inbox.day_of(b.days) + timedelta(days=1)).isoformat()
    res = day_one(args, b)
    if b.days > 1:
        res["history"], last = last_day(args, b, res["engine"])
        if args.late_days:
            res["late"] = late_days(args, b, last)
    res["bench_seconds"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2, default=str))
    print_table(res)
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
