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
