"""Issue 6 measurement: one billing day in-process vs on a Dask LocalCluster.

Usage: uv run python bench/scaling.py WARM_DIR YYYY-MM-DD local1|local4|dask4 [...]
WARM_DIR holds a data dir whose earlier days are billed and whose inbox holds the day's
usage; each mode bills a copy of it. Set ADBILL_DASK_WORKERS for the cluster's size.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path


def measure(warm: Path, day: date, mode: str) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"scale-{mode}-"))
    data = work / "data"
    shutil.copytree(warm, data)
    t = time.perf_counter()
    if mode.startswith("local"):
        from tasks.pipeline import run_billing
        from tasks.settings import Settings

        summary = run_billing(Settings(data_dir=data, shards=int(mode[5:])), day).summary()
    else:
        from flows.daily import daily_billing

        summary = daily_billing(
            through=day,
            data_dir=str(data),
            shards=int(mode[4:]),
            task_runner="dask",
            trigger="bench",
        )
    wall = time.perf_counter() - t
    shutil.rmtree(work, ignore_errors=True)
    hwm = next(ln for ln in open("/proc/self/status") if ln.startswith("VmHWM"))
    return {
        "mode": mode,
        "wall_s": round(wall, 2),
        "stage_seconds": summary["stage_seconds"],
        "flow_process_peak_mib": int(hwm.split()[1]) // 1024,
    }


def main() -> None:
    warm, day, modes = Path(sys.argv[1]), date.fromisoformat(sys.argv[2]), sys.argv[3:]
    for mode in modes:
        print(json.dumps(measure(warm, day, mode)))


if __name__ == "__main__":
    main()
