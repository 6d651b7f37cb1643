"""Markdown tables of benchmark results (bench/run.py JSON files), for docs/performance.md.

uv run python bench/report.py bench/out/1m.json bench/out/10m.json [--history h.json]
uv run python bench/report.py --by-engine a1.json b1.json a2.json b2.json

`--by-engine`: the files of one engine (its digest) as one column — each stage the median of
the files' figures, the day the median of every run's wall time, the floor the median of
the files' floors — and the second engine's difference from the first (an alternating A/B of
two checkouts, each file one round of `bench/run.py --repeat N`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run_stages import STAGES  # noqa: E402


def stage_keys(stage_dicts) -> list[str]:
    """The stages of every result, each once, in order of first appearance."""
    return list(dict.fromkeys(k for stages in stage_dicts for k in stages))


def stage_rows(results: list[dict]) -> str:
    head = "| stage | " + " | ".join(
        f"{r['params']['events']:,} events: s | × floor" for r in results
    )
    lines = [head + " |", "|---|" + "---:|---:|" * len(results)]
    for k in stage_keys(r["engine"]["stages"] for r in results):
        cells = []
        for r in results:
            v, f = r["engine"]["stages"].get(k, 0.0), r["floor"]["seconds"]
            cells += [f"{v:.2f}", f"{v / f:.2f}"]
        lines.append(f"| {STAGES.get(k, k)} | " + " | ".join(cells) + " |")
    rows = [
        ("other (run records, file listing)", lambda r: r["engine"]["other_seconds"], True),
        ("**total (engine, wall)**", lambda r: r["engine"]["total_seconds"], True),
        ("floor: read_json + group by (best)", lambda r: r["floor"]["seconds"], True),
    ]
    for label, get, ratio in rows:
        cells = []
        for r in results:
            v = get(r)
            cells += [f"{v:.2f}", f"{v / r['floor']['seconds']:.2f}" if ratio else ""]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    cells = []
    for r in results:
        cells += [f"{r['engine']['cpu_seconds']:.2f}", f"{r['ratio_cpu']:.2f}"]
    lines.append("| CPU s of the billing process; × floor's CPU | " + " | ".join(cells) + " |")
    cells = []
    for r in results:
        cells += [f"{r['engine']['peak_rss_bytes'] / 2**30:.2f} GiB", ""]
    lines.append("| peak RSS (VmHWM) of the billing process | " + " | ".join(cells) + " |")
    cells = []
    for r in results:
        o = [x["others_cpu_seconds"] for x in r["engine"]["runs"]]
        w = [x["wall_seconds"] for x in r["engine"]["runs"]]
        cells += [f"{min(o):.0f}–{max(o):.0f} s", f"{sum(o) / sum(w):.2f} cores"]
    lines.append("| other processes' CPU during the runs | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def by_engine(results: list[dict]) -> list[dict]:
    """The results grouped by engine digest, in order of first appearance: per group the
    engine, the files' count, every run's wall time, and the medians of the stages, the
    runs, the CPU seconds and the floor."""
    groups: dict[str, list[dict]] = {}
    for r in results:
        groups.setdefault(r["engine_version"]["digest"], []).append(r)
    merged = []
    for rs in groups.values():
        keys = stage_keys(r["engine"]["stages"] for r in rs)
        walls = [x["wall_seconds"] for r in rs for x in r["engine"]["runs"]]
        merged.append(
            {
                "engine": rs[0]["engine_version"],
                "files": len(rs),
                "events": rs[0]["params"]["events"],
                "walls": walls,
                "stages": {
                    k: statistics.median(r["engine"]["stages"].get(k, 0.0) for r in rs)
                    for k in keys
                },
                "total": statistics.median(walls),
                "cpu": statistics.median(r["engine"]["cpu_seconds"] for r in rs),
                "floor": statistics.median(r["floor"]["seconds"] for r in rs),
            }
        )
    return merged


def engine_rows(groups: list[dict]) -> str:
    """by_engine's groups side by side (seconds, × floor), and the second one's difference."""
    names = [f"`{g['engine'].get('commit', '?')}` ({g['files']} files)" for g in groups]
    diff = len(groups) == 2
    head = "| stage | " + " | ".join(f"{n}: s | × floor" for n in names)
    lines = [head + (" | second − first |" if diff else " |")]
    lines.append("|---|" + "---:|---:|" * len(groups) + ("---:|" if diff else ""))
    keys = stage_keys(g["stages"] for g in groups)
    rows = [(STAGES.get(k, k), [g["stages"].get(k, 0.0) for g in groups], True) for k in keys]
    rows += [
        ("**the day (median of every run)**", [g["total"] for g in groups], True),
        ("floor (median of the files')", [g["floor"] for g in groups], True),
        ("CPU s of the billing process", [g["cpu"] for g in groups], False),
    ]
    for label, values, ratio in rows:
        cells = []
        for g, v in zip(groups, values, strict=True):
            cells += [f"{v:.2f}", f"{v / g['floor']:.2f}" if ratio else ""]
        if diff:
            cells.append(f"{values[1] - values[0]:+.2f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for n, g in zip(names, groups, strict=True):
        runs = ", ".join(f"{w:.1f}" for w in g["walls"])
        lines.append(f"\n{n}, {g['events']:,} events: runs {runs} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("results", nargs="+", type=Path)
    ap.add_argument(
        "--by-engine",
        action="store_true",
        help="one column per engine (medians of its files), and the difference of two",
    )
    args = ap.parse_args(argv)
    results = [json.loads(p.read_text()) for p in args.results]
    if args.by_engine:
        print(engine_rows(by_engine(results)))
        return 0
    print(stage_rows(results))
    for r in results:
        runs = ", ".join(f"{x['wall_seconds']:.1f}" for x in r["engine"]["runs"])
        print(
            f"\n{r['params']['events']:,} events: runs {runs} s; floor runs "
            + ", ".join(f"{x:.2f}" for x in r["floor"]["runs"])
            + f"; engine {r['engine_version']}"
        )
        if n := r.get("naive"):
            print(
                f"naive {n['naive_seconds']:.2f} s, draw_day {n['engine_draw_day_seconds']:.2f} "
                f"s, draw_shard {n['engine_draw_shard_seconds']:.2f} s, deduct stage "
                f"{r['engine']['stages']['deduct']:.2f} s, same: {n['same_customer_totals']}"
                f"/{n['same_pool_draws']}, events {n['events']:,}"
            )
        if p := r.get("prefect"):
            print(f"prefect {p}")
        if e := r.get("e2e"):
            print(f"e2e {e['wall_seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
