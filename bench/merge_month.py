"""Time merging one closed month's day files (tasks/day_files.py `compact`) on a clone of a
billed state, as the first run after the month leaves the working window would.

    uv run python bench/merge_month.py STATE_DIR --month 2026-11 [--scratch DIR]

STATE_DIR: a state dir (`adbill.duckdb` and `days/`), e.g. a saved state of `bench/run.py
--history 60` under its workdir (`states/<engine>/chain-60`). The clone (the DuckDB file
copied, the day files hard-linked: `run_states.clone_state`) is what is changed; the saved
state is not. The working window is moved past the month (`frozen_before` set to the first
of the month after): every closed month not merged yet is merged.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from run_states import clone_state  # noqa: E402

from tasks.day_files import _next_month, compact  # noqa: E402
from tasks.db import connect  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("state", type=Path)
    ap.add_argument("--month", type=str, required=True, help="YYYY-MM")
    ap.add_argument("--scratch", type=Path, default=HERE / "data" / "merge-month")
    args = ap.parse_args(argv)
    month = date.fromisoformat(f"{args.month}-01")
    shutil.rmtree(args.scratch, ignore_errors=True)
    clone_state(args.state, args.scratch / "state")
    con = connect(args.scratch / "state" / "adbill.duckdb")
    try:
        rows = con.execute(
            "select table_name, count(distinct path), sum(rows) from day_files "
            "where superseded_at is null and part is null and path is not null "
            "and day >= $m and day < $a group by all order by all",
            {"m": month, "a": _next_month(month)},
        ).fetchall()
        con.execute(
            "insert or replace into adbill_meta values ('frozen_before', ?)",
            [_next_month(month).isoformat()],
        )
        t, cpu = time.perf_counter(), time.process_time()
        merged, warnings = compact(con, "bench-merge")
        out = {
            "month": args.month,
            "files_and_rows": {t: {"files": f, "rows": int(r)} for t, f, r in rows},
            "table_months_merged": merged,
            "warnings": warnings,
            "wall_seconds": round(time.perf_counter() - t, 2),
            "cpu_seconds": round(time.process_time() - cpu, 2),
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        }
    finally:
        con.close()
        shutil.rmtree(args.scratch, ignore_errors=True)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
