"""What bench/run.py measures: the floor of reading a day, the engine's runs stage by stage,
Prefect's start-up and `adbill run` end to end; and the table it prints."""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import duckdb
from run_machine import ROOT, quiet, say, wait_quiet
from run_states import billrun, restore

# stage key of RunReport.stage_seconds() -> label; keys the engine adds later are appended
STAGES = {
    "open": "open the warehouse (schema checks)",
    "read": "ingest (read)",
    "scan": "scan the lines of plain form (compiled: parse, type, check)",
    "validate": "validate and rate (one pass: facts, business rules, credits)",
    "reasons": "reasons of the lines not clean (Pandera)",
    "rate": "apply the catalog (re-rate after a price change or a rebill)",
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
    "export": "write the changed days' files",
    "compact": "merge closed months' files, collect old ones",
    "checkpoint": "checkpoint and close",
    "publish": "publish",
}
# the floor reads the usage with this explicit schema
USAGE_COLUMNS = {
    "event_id": "VARCHAR",
    "customer_id": "VARCHAR",
    "account_id": "VARCHAR",
    "function": "VARCHAR",
    "quantity": "DECIMAL(18, 6)",
    "status": "VARCHAR",
    "occurred_at": "TIMESTAMPTZ",
}


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


INGEST_STEPS = ("read", "scan", "validate", "reasons", "store")


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
            f"{h['first_day_seconds']:.2f} s: {h['ratio']:.2f}x; "
            f"CPU {h['ratio_cpu']:.2f}x; without the final documents of a closed month "
            f"{h['ratio_without_final_documents']:.2f}x (day 1 run before the chain)"
        )
        if pr := h.get("paired"):
            pairs = ", ".join(f"{x:.2f}" for x in pr["pair_ratios"])
            print(
                f"history, day 1 run alternately with day {h['days']}: day 1 "
                f"{pr['first_day_seconds']:.2f} s: {pr['ratio']:.2f}x (pairs {pairs}); CPU "
                f"{pr['ratio_cpu']:.2f}x; without final documents "
                f"{pr['ratio_without_final_documents']:.2f}x"
            )
        if d := h.get("disk"):
            print(
                f"disk after day {h['days']}: working state {d['state_bytes'] / 2**30:.2f} GiB "
                f"(of it day files {d['day_files_bytes'] / 2**30:.2f} GiB), warehouse "
                f"{d['warehouse_bytes'] / 2**20:.1f} MiB: {d['ratio']:.3f}x the state alone"
            )
    if lt := res.get("late"):
        print(
            f"late data: recompute of {lt['days']} days {lt['seconds']:.2f} s vs one day "
            f"{lt['one_day_seconds']:.2f} s: {lt['ratio_to_one_day']:.2f}x "
            f"(target <= {lt['days']}); CPU {lt['ratio_cpu']:.2f}x"
        )
    if e := res.get("e2e"):
        print(f"adbill run end to end: {e['wall_seconds']:.1f} s")
