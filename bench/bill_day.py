"""Bill one bench day on a data dir as it stands, in a fresh process; print its stages.

    uv run python bench/bill_day.py DAY --run-dir DIR [--customers 10000] [--active N]
                                    [--events 1000000] [--seed 42] [--workdir bench/data]

DAY is the bench day's index (0 = the first day after the warm-up, as bench/run.py counts
them). The day's files (bench/inbox.py, made if missing, under --workdir's key for these
parameters) are delivered into DIR's inbox and `tasks.pipeline.run_billing` bills through
that day (bench/billrun.py). For a state too large for bench/run.py's `restore` (a million
customers: it copies every document file), copy the saved state by hand — the database
copied, `days/` and `out/` hard-linked (the engine replaces files by rename, never in
place), the inbox copied (a hard link is turned away, billing-rules §3) — and bill its
days with this, as docs/performance.md does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import inbox  # noqa: E402
from run_stages import stages_of  # noqa: E402
from run_states import billrun, link_inbox  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("day", type=int, help="the bench day's index (0: the first bench day)")
    ap.add_argument("--run-dir", type=Path, required=True)
    ap.add_argument("--customers", type=int, default=10_000)
    ap.add_argument("--active", type=int, default=None)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--workdir", type=Path, default=HERE / "data")
    args = ap.parse_args(argv)
    key = inbox.src_key(
        args.workdir.absolute(), args.customers, args.events, args.seed, args.active
    )
    src = key / "src"
    plan = inbox.make_plan(args.customers, args.events, args.seed, active=args.active)
    link_inbox(args.run_dir, src, inbox.day_files(src, plan, args.day))
    os.sync()
    r = billrun(args.run_dir, inbox.day_of(args.day))
    print(
        json.dumps(
            {
                "day": str(inbox.day_of(args.day)),
                "wall_seconds": r["wall_seconds"],
                "cpu_seconds": r.get("cpu_seconds"),
                "others_cpu_seconds": r.get("others_cpu_seconds"),
                "peak_rss_gib": r["peak_rss_bytes"] / 2**30,
                "stages": {k: round(v, 3) for k, v in stages_of(r).items()},
                "documents": r["summary"].get("document_seconds"),
                "day_files": r["summary"].get("day_files"),
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
