"""Benchmark of a billing day: the engine's stages beside the floor of reading the day.

    uv run python bench/run.py --events N [--customers 10000] [--repeat 3] [--history 60]
                               [--late-days k] [--out bench/out/result.json]
                               [--workdir bench/data] [--e2e] [--prefect|--no-prefect]

1. Writes (or reuses, keyed by its parameters, under --workdir) the inbox of bench/inbox.py:
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
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import duckdb  # noqa: E402
import inbox  # noqa: E402

# stage key of RunReport.stage_seconds() -> label; keys the engine adds later are appended
STAGES = {
    "open": "open the warehouse (schema checks)",
    "read": "ingest (read)",
    "validate": "validate",
    "rate": "rate (business checks, rating)",
    "store": "store (write events)",
    "orders": "orders, pools rebuild, file checks",
    "unbill": "unbill the day, count shards",
    "deduct": "deduct",
    "expire": "expire",
    "daily": "daily figures",
    "invariants": "invariants",
    "suspensions": "suspension lists",
    "statements": "statements",
    "commit": "close the day (pools, commit)",
    "plan": "plan the days (late data, rebill)",
    "documents": "documents",
    "checkpoint": "checkpoint and close",
    "publish": "publish",
}
# seconds to wait for a quiet machine before each measurement (--quiet-wait)
quiet = {"wait": 120.0}
USAGE_COLUMNS = {
    "event_id": "VARCHAR",
    "customer_id": "VARCHAR",
    "account_id": "VARCHAR",
    "function": "VARCHAR",
    "quantity": "DECIMAL(18, 6)",
    "status": "VARCHAR",
    "occurred_at": "TIMESTAMPTZ",
}


def say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- data dirs and states


def engine_version() -> str:
    """A digest of the engine's code, SQL and catalog: cached states are per engine version."""
    h = hashlib.sha256()
    for p in sorted([*ROOT.glob("tasks/*.py"), *ROOT.glob("sql/**/*.sql"), *ROOT.glob("data/*")]):
        h.update(p.relative_to(ROOT).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def git_head() -> dict:
    def git(*a: str) -> str:
        r = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, check=False)
        return r.stdout.strip()

    if os.environ.get("BENCH_GIT_COMMIT"):  # measuring an exported copy of a commit
        return {"commit": os.environ["BENCH_GIT_COMMIT"], "subject": "", "exported": True}
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "subject": git("log", "-1", "--format=%s"),
        "uncommitted_engine_changes": bool(git("status", "--porcelain", "tasks", "sql", "flows")),
    }


def machine() -> dict:
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem / 2**30, 1),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "polars": __import__("polars").__version__,
    }


def busy_seconds() -> float:
    """CPU seconds all processes on the machine have used since boot (/proc/stat)."""
    try:
        f = Path("/proc/stat").read_text().splitlines()[0].split()
        return sum(int(x) for i, x in enumerate(f[1:9]) if i not in (3, 4)) / os.sysconf(
            "SC_CLK_TCK"
        )
    except (OSError, ValueError):
        return 0.0


def wait_quiet(max_wait: float, cores: float = 0.3, window: float = 3.0) -> float | None:
    """Wait (at most max_wait s) until the rest of the machine uses under `cores` CPUs.

    The machine may be shared (other sessions' tests): a run started in a busy moment
    measures the contention, not the engine. Returns the CPUs the others used last.
    """
    if max_wait <= 0:
        return None
    deadline = time.monotonic() + max_wait
    while True:
        b = busy_seconds()
        time.sleep(window)
        used = (busy_seconds() - b) / window
        if used < cores or time.monotonic() >= deadline:
            return used


def link_inbox(data_dir: Path, src: Path, files: list[Path]) -> None:
    """Deliver files into the data dir's inbox: copies with the same bytes and stat (a hard
    link is turned away as not a regular file, billing-rules §3)."""
    for f in files:
        dest = data_dir / "inbox" / f.relative_to(src)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            shutil.copy2(f, dest)


def restore(run_dir: Path, state: Path | None, src: Path, files: list[Path]) -> None:
    """A fresh data dir at run_dir: a copy of a saved state (none: empty) and the given files.

    Every run uses the same path, so files the state already ingested are recognised by their
    path and stat and skipped without re-reading, as in production.
    """
    if run_dir.exists():
        shutil.rmtree(run_dir)
    (run_dir / "inbox").mkdir(parents=True)
    if state is not None:
        shutil.copytree(state, run_dir / "state", ignore=shutil.ignore_patterns("run.lock", "out"))
        # the statements and lists the state's runs wrote: a run writes over them, as in
        # production (each later day of a month replaces the month's statement files)
        if (state / "out").is_dir():
            shutil.copytree(state / "out", run_dir / "out")
    link_inbox(run_dir, src, files)
    # the disk work of deleting the last run's files and copying these is done before the
    # timed run starts, not during it
    os.sync()


def save_state(run_dir: Path, dest: Path) -> None:
    """The state dir and the out dir (statements, lists) of run_dir, kept as dest."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(run_dir / "state", dest, ignore=shutil.ignore_patterns("run.lock"))
    if (run_dir / "out").is_dir():
        shutil.copytree(run_dir / "out", dest / "out")


def billrun(data_dir: Path, through, *, flow: bool = False) -> dict:
    """One run through `through` in a fresh process; its JSON (bench/billrun.py)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    cmd = [sys.executable, str(HERE / "billrun.py"), str(data_dir), str(through), "--out", str(out)]
    if flow:
        cmd.append("--flow")
    try:
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"billing run through {through} failed:\n{r.stderr[-4000:]}")
        return json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)


# ---------------------------------------------------------------- measurements


def floor(files: list[Path], repeat: int) -> dict:
    """DuckDB reading the day's usage with an explicit schema and one GROUP BY customer_id."""
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    cols = ", ".join(f"'{k}': '{v}'" for k, v in USAGE_COLUMNS.items())
    paths = ", ".join(f"'{p}'" for p in files)
    q = f"""
        select customer_id, count(*) as events, sum(quantity) as quantity
        from read_json([{paths}], format = 'newline_delimited', columns = {{{cols}}},
                       ignore_errors = true)
        group by customer_id
    """
    runs, cpu = [], []
    rows = 0
    load = os.getloadavg()[0]
    for _ in range(repeat):
        wait_quiet(quiet["wait"])
        c = resource.getrusage(resource.RUSAGE_SELF)
        t = time.perf_counter()
        rows = len(con.sql(q).fetchall())
        runs.append(time.perf_counter() - t)
        u = resource.getrusage(resource.RUSAGE_SELF)
        cpu.append(u.ru_utime - c.ru_utime + u.ru_stime - c.ru_stime)
    con.close()
    best = runs.index(min(runs))
    return {
        "seconds": runs[best],
        "cpu_seconds": cpu[best],
        "runs": runs,
        "cpu_runs": cpu,
        "customers": rows,
        "loadavg_1min": load,
    }


INGEST_STEPS = ("read", "validate", "rate", "store")


def stages_of(run: dict) -> dict[str, float]:
    """A run's seconds per stage; `orders` is the ingest's time outside its usage steps."""
    s = dict(run["summary"]["stage_seconds"])
    ingest = run["summary"]["seconds"].get("ingest", 0.0)
    s["orders"] = max(0.0, ingest - sum(s.get(k, 0.0) for k in INGEST_STEPS))
    run["stages"] = s
    return s


def stage_table(runs: list[dict]) -> dict:
    """Median seconds per stage over the runs, the rest of the wall time as `other`."""
    for r in runs:
        stages_of(r)
    keys = list(STAGES)
    for r in runs:
        keys += [k for k in r["stages"] if k not in keys]
    stages = {k: statistics.median(r["stages"].get(k, 0.0) for r in runs) for k in keys}
    other = statistics.median(r["wall_seconds"] - sum(r["stages"].values()) for r in runs)
    return {
        "stages": stages,
        "other_seconds": other,
        "cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs),
        "total_seconds": statistics.median(r["wall_seconds"] for r in runs),
        "peak_rss_bytes": max(r["peak_rss_bytes"] for r in runs),
        "runs": [
            {
                "wall_seconds": r["wall_seconds"],
                "cpu_seconds": r.get("cpu_seconds"),
                "loadavg_1min": r.get("loadavg_1min"),
                "others_cpu_seconds": r.get("others_cpu_seconds"),
                "peak_rss_bytes": r["peak_rss_bytes"],
                "stage_seconds": r["stages"],
                "days_billed": r["summary"]["days_billed"],
                "day_seconds": r["summary"].get("day_seconds"),
                "events_accepted": r["summary"]["events_accepted"],
                "events_rejected": r["summary"]["events_rejected"],
            }
            for r in runs
        ],
    }


def timed_runs(run_dir, state, src, files, through, repeat, label) -> list[dict]:
    runs = []
    for i in range(repeat):
        restore(run_dir, state, src, files)
        busy_before = wait_quiet(quiet["wait"])
        r = billrun(run_dir, through)
        r["others_cores_before"] = busy_before
        say(
            f"{label} run {i + 1}/{repeat}: {r['wall_seconds']:.2f} s "
            f"(cpu {r['cpu_seconds']:.1f} s, others' cpu {r['others_cpu_seconds']:.1f} s), "
            f"peak RSS {r['peak_rss_bytes'] / 2**30:.2f} GiB"
        )
        runs.append(r)
    return runs


def prefect_startup(workdir: Path, through) -> dict:
    """The flow daily_billing on an empty data dir: Prefect's own cost (server start, tasks)."""
    empty = workdir / "prefect-empty"
    if empty.exists():
        shutil.rmtree(empty)
    (empty / "inbox").mkdir(parents=True)  # a run refuses a data dir without an inbox
    r = billrun(empty, through, flow=True)
    shutil.rmtree(empty, ignore_errors=True)
    engine = sum(r["summary"]["seconds"].values())
    return {
        "import_seconds": r["import_seconds"],
        "flow_seconds_empty_data_dir": r["wall_seconds"],
        "engine_seconds_inside": engine,
        "prefect_overhead_seconds": r["wall_seconds"] - engine,
    }


def end_to_end(run_dir: Path, state: Path, src: Path, files: list[Path], through) -> dict:
    """`adbill run` as a user types it, timed from outside (Python start to exit)."""
    restore(run_dir, state, src, files)
    t = time.perf_counter()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "run",
            "--data-dir",
            str(run_dir),
            "--through",
            str(through),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PREFECT_LOGGING_LEVEL": "WARNING"},
    )
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"adbill run failed:\n{r.stderr[-4000:]}")
    return {
        "command": f"adbill run --data-dir <dir> --through {through}",
        "wall_seconds": wall,
        "output": r.stdout.strip(),
    }


# ---------------------------------------------------------------- the modes


def history_chain(run_dir, cache, warm, src, plan, days: int) -> tuple[Path, list[dict]]:
    """Bill event days 0..days-2 one daily run at a time; the state before the last day."""
    snap, log = cache / f"chain-{days}", cache / f"chain-{days}.json"
    if (snap / "adbill.duckdb").exists() and log.exists():
        return snap, json.loads(log.read_text())
    restore(run_dir, warm, src, inbox.warmup_files(src, plan))
    series = []
    for d in range(days - 1):
        link_inbox(run_dir, src, inbox.day_files(src, plan, d))
        r = billrun(run_dir, inbox.day_of(d))
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
        say(f"history day {d + 1}/{days}: {r['wall_seconds']:.2f} s")
    save_state(run_dir, snap)
    log.write_text(json.dumps(series))
    return snap, series


def all_files(src: Path, plan, days: int) -> list[Path]:
    files = inbox.warmup_files(src, plan)
    for d in range(days):
        files += inbox.day_files(src, plan, d)
    return files


def print_table(res: dict) -> None:
    t = res["engine"]
    floor_s = res["floor"]["seconds"]
    print(
        f"\nbilling day {res['params']['day']}: {res['params']['events']:,} events, "
        f"{res['params']['customers']:,} customers, median of {res['params']['repeat']}"
    )
    print(f"{'stage':34} {'seconds':>9} {'x floor':>8}")
    for k, v in t["stages"].items():
        print(f"{STAGES.get(k, k):34} {v:9.3f} {v / floor_s:8.2f}")
    print(f"{'other (run records, file listing)':34} {t['other_seconds']:9.3f}")
    print(f"{'total':34} {t['total_seconds']:9.3f} {res['ratio']:8.2f}")
    if (days := t["runs"][0]["days_billed"]) != 1:
        print(f"  (the run billed {days} days: {[d['day'] for d in t['runs'][0]['day_seconds']]})")
    print(f"{'floor (read_json + group by)':34} {floor_s:9.3f} {1:8.2f}")
    print(
        f"{'CPU seconds: billing process, floor':34} {t['cpu_seconds']:9.3f} "
        f"{res['ratio_cpu']:8.2f}  (floor {res['floor']['cpu_seconds']:.3f})"
    )
    print(f"peak RSS of the billing run: {t['peak_rss_bytes'] / 2**30:.2f} GiB")
    others = [r["others_cpu_seconds"] for r in t["runs"]]
    print(
        f"CPU seconds other processes used during the runs: {min(others):.1f}..{max(others):.1f}"
        " (0 on a quiet machine)"
    )
    if p := res.get("prefect"):
        print(
            f"Prefect, apart: import {p['import_seconds']:.1f} s, flow on an empty data dir "
            f"{p['flow_seconds_empty_data_dir']:.1f} s"
        )
    if n := res.get("naive"):
        same = n["same_customer_totals"] and n["same_pool_draws"]
        print(
            f"deduct: naive per-event loop {n['naive_seconds']:.2f} s vs set-based draw_day "
            f"{n['engine_draw_day_seconds']:.2f} s (engine deduct stage "
            f"{t['stages']['deduct']:.2f} s); same totals: {same}"
        )
    if h := res.get("history"):
        print(
            f"history: day {h['days']} {h['last_day_seconds']:.2f} s vs day 1 "
            f"{h['first_day_seconds']:.2f} s: {h['ratio']:.2f}x (target <= 1.2); "
            f"CPU {h['ratio_cpu']:.2f}x"
        )
    if lt := res.get("late"):
        print(
            f"late data: recompute of {lt['days']} days {lt['seconds']:.2f} s vs one day "
            f"{lt['one_day_seconds']:.2f} s: {lt['ratio_to_one_day']:.2f}x "
            f"(target <= {lt['days']}); CPU {lt['ratio_cpu']:.2f}x"
        )
    if e := res.get("e2e"):
        print(f"adbill run end to end: {e['wall_seconds']:.1f} s")


def main(argv: list[str] | None = None) -> int:
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
    quiet["wait"] = args.quiet_wait
    started = time.perf_counter()
    workdir = args.workdir.absolute()
    key = workdir / f"c{args.customers}-e{args.events}-s{args.seed}-v{inbox.GEN_VERSION}"
    src, cache = key / "src", key / "states" / engine_version()
    run_dir = workdir / "run"
    if key.joinpath("states").exists():  # states of older engine versions
        for old in key.joinpath("states").iterdir():
            if old != cache:
                shutil.rmtree(old, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    plan = inbox.make_plan(args.customers, args.events, args.seed)
    days = max(args.history, args.late_days, 1)
    day1, last = inbox.day_of(0), inbox.day_of(days - 1)

    t = time.perf_counter()
    warm_files = inbox.warmup_files(src, plan)
    day_files = inbox.day_files(src, plan, 0)
    say(f"inbox ready under {src} ({time.perf_counter() - t:.1f} s)")

    warm = cache / "warm"
    if not (warm / "adbill.duckdb").exists():
        restore(run_dir, None, src, warm_files)
        r = billrun(run_dir, inbox.day_of(-1))
        save_state(run_dir, warm)
        say(
            f"warm-up: billed {r['summary']['days_billed']} days before {day1} "
            f"in {r['wall_seconds']:.1f} s"
        )

    usage = [f for f in day_files if f.suffix == ".jsonl"]
    fl = floor(usage, max(args.repeat, 1))
    say(f"floor: {fl['seconds']:.3f} s")

    runs = timed_runs(run_dir, warm, src, warm_files + day_files, day1, args.repeat, "day 1")
    engine = stage_table(runs)
    res: dict = {
        "params": {
            "events": args.events,
            "customers": args.customers,
            "repeat": args.repeat,
            "seed": args.seed,
            "day": day1.isoformat(),
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
        from naive import compare

        res["naive"] = compare(run_dir / "state" / "adbill.duckdb", day1)
        say(
            f"naive {res['naive']['naive_seconds']:.2f} s, draw_day "
            f"{res['naive']['engine_draw_day_seconds']:.2f} s"
        )
    if args.prefect if args.prefect is not None else args.events >= 100_000:
        res["prefect"] = prefect_startup(workdir, day1)
    if args.e2e:
        res["e2e"] = end_to_end(run_dir, warm, src, warm_files + day_files, day1)

    if days > 1:
        before_last, series = history_chain(run_dir, cache, warm, src, plan, days)
        files = all_files(src, plan, days)
        last_runs = timed_runs(run_dir, before_last, src, files, last, args.repeat, f"day {days}")
        last_table = stage_table(last_runs)
        after_last = cache / f"after-{days}"
        save_state(run_dir, after_last)
        res["history"] = {
            "days": days,
            "first_day_seconds": engine["total_seconds"],
            "last_day_seconds": last_table["total_seconds"],
            "ratio": last_table["total_seconds"] / engine["total_seconds"],
            "first_day_cpu_seconds": engine["cpu_seconds"],
            "last_day_cpu_seconds": last_table["cpu_seconds"],
            "ratio_cpu": last_table["cpu_seconds"] / engine["cpu_seconds"],
            "last_day": last_table,
            "series": series,
        }
        if args.late_days:
            k = args.late_days
            late = src / "usage" / f"late-{k}-{args.late_share:g}-{last}.jsonl"
            if not late.exists():
                inbox.write_late_usage(late, plan, list(range(days - k, days)), args.late_share)
            late_runs = timed_runs(
                run_dir, after_last, src, [*files, late], last, args.repeat, f"late {k} days"
            )
            lt = stage_table(late_runs)
            one = last_table["total_seconds"]
            billing_one = sum(
                v for s, v in last_table["stages"].items() if s not in (*INGEST_STEPS, "orders")
            )
            res["late"] = {
                "days": k,
                "late_events": sum(r["events_accepted"] for r in lt["runs"]) // len(lt["runs"]),
                "days_billed": lt["runs"][0]["days_billed"],
                "seconds": lt["total_seconds"],
                "one_day_seconds": one,
                "one_day_billing_only_seconds": billing_one,
                "ratio_to_one_day": lt["total_seconds"] / one,
                "cpu_seconds": lt["cpu_seconds"],
                "one_day_cpu_seconds": last_table["cpu_seconds"],
                "ratio_cpu": lt["cpu_seconds"] / last_table["cpu_seconds"],
                "run": lt,
            }
    res["bench_seconds"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2, default=str))
    print_table(res)
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
