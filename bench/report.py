"""Markdown tables of benchmark results (bench/run.py JSON files), for docs/performance.md.

uv run python bench/report.py bench/out/1m.json bench/out/10m.json [--history h.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run_stages import STAGES  # noqa: E402


def stage_rows(results: list[dict]) -> str:
    head = "| stage | " + " | ".join(
        f"{r['params']['events']:,} events: s | × floor" for r in results
    )
    lines = [head + " |", "|---|" + "---:|---:|" * len(results)]
    keys: list[str] = []
    for r in results:
        keys += [k for k in r["engine"]["stages"] if k not in keys]
    for k in keys:
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("results", nargs="+", type=Path)
    args = ap.parse_args(argv)
    results = [json.loads(p.read_text()) for p in args.results]
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
