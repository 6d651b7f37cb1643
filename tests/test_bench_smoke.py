"""The benchmark runs at a tiny size and reports every stage, the floor and peak memory.

No timing is asserted here: timing belongs in bench/ (docs/performance.md has the figures).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STAGE_KEYS = [
    "read",
    "validate",
    "reasons",
    "rate",
    "store",
    "orders",
    "deduct",
    "expire",
    "daily",
    "invariants",
    "suspensions",
    "statements",
    "documents",
    "publish",
]


def test_bench_reports_every_stage_the_floor_and_peak_rss(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "run.py"),
        "--events",
        "5000",
        "--customers",
        "200",
        "--repeat",
        "1",
        "--no-prefect",
        "--quiet-wait",
        "0",
        "--workdir",
        str(tmp_path / "work"),
        "--out",
        str(out),
    ]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    stages = res["engine"]["stages"]
    assert [k for k in STAGE_KEYS if k not in stages] == []
    engine, floor = res["engine"], res["floor"]
    # the figures hang together (whatever they are: no timing is asserted)
    assert res["ratio"] == pytest.approx(engine["total_seconds"] / floor["seconds"])
    assert sum(engine["stages"].values()) + engine["other_seconds"] == pytest.approx(
        engine["total_seconds"]
    )
    assert all(v >= 0 for v in engine["stages"].values()) and floor["seconds"] > 0
    assert 100 < floor["customers"] <= 200  # the floor's GROUP BY saw the day's customers
    assert engine["peak_rss_bytes"] > 50 * 2**20  # bytes, not KiB: Polars and DuckDB loaded
    run = engine["runs"][0]
    assert run["days_billed"] == 1
    assert run["events_accepted"] > 4900
    assert run["events_accepted"] + run["events_rejected"] <= 5000
    assert res["naive"]["same_customer_totals"] and res["naive"]["same_pool_draws"]
    assert "total" in r.stdout and "floor" in r.stdout


def test_report_by_engine_puts_each_engines_files_in_one_column_of_medians():
    """`bench/report.py --by-engine`: an alternating A/B's files grouped by engine digest,
    each stage the median of the group's files, the day the median of every run."""
    sys.path.insert(0, str(ROOT / "bench"))
    import report

    def result(digest: str, commit: str, store: float, walls: list[float], floor: float):
        return {
            "engine_version": {"digest": digest, "commit": commit},
            "params": {"events": 1000},
            "engine": {
                "stages": {"store": store, "deduct": 1.0},
                "runs": [{"wall_seconds": w} for w in walls],
                "cpu_seconds": sum(walls),
            },
            "floor": {"seconds": floor},
        }

    files = [
        result("a", "old", 3.0, [10.0, 12.0], 1.0),
        result("b", "new", 2.0, [9.0, 9.5], 1.0),
        result("a", "old", 5.0, [11.0, 13.0], 2.0),
        result("b", "new", 1.0, [8.0, 20.0], 1.0),
    ]
    old, new = report.by_engine(files)
    assert (old["engine"]["commit"], old["files"], new["files"]) == ("old", 2, 2)
    assert old["stages"] == {"store": 4.0, "deduct": 1.0}
    assert new["stages"]["store"] == 1.5
    assert (old["total"], new["total"]) == (11.5, 9.25)  # every run's wall time
    assert (old["floor"], new["floor"]) == (1.5, 1.0)
    table = report.engine_rows([old, new])
    assert "| store (write events) | 4.00 | 2.67 | 1.50 | 1.50 | -2.50 |" in table
    assert "runs 10.0, 12.0, 11.0, 13.0 s" in table
