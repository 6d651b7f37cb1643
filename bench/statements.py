"""Every DuckDB statement of one bench billing day, timed and grouped by the code that ran it.

    uv run python bench/statements.py --events N [--customers 10000] [--workdir bench/data]
                                      [--top 30]

Needs a `bench/run.py --events N` before it (same --workdir: its saved state and inbox). The
day is restored as `bench/run.py` restores it (the warmed-up state cloned, the day's files
delivered) and billed in this process by `tasks.pipeline.run_billing`, with every
`execute`, `sql` and `executemany` of a DuckDB connection timed: the largest statements,
and how many statements took under 30 ms and how long they took together (what a day
spends on small statements), beside the time outside DuckDB (Python: reading files,
Pandera, the Polars draw, writing documents). The run is not isolated the way
`bench/run.py`'s are (its imports and this wrapper are in the same process): its total is
for proportions, not for the figures of docs/performance.md.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import traceback
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import duckdb  # noqa: E402
import inbox  # noqa: E402
from run_machine import engine_version  # noqa: E402
from run_states import restore  # noqa: E402

SPACES = re.compile(r"\s+")
SMALL = 0.030  # seconds: a statement under this is counted among the small ones


class Statements:
    """Seconds and counts of statements, keyed by the code that ran them and their text."""

    def __init__(self) -> None:
        self.seen: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
        self.small = [0, 0.0]
        self._depth = 0

    def wrap(self) -> None:
        for name in ("execute", "sql", "executemany"):
            setattr(
                duckdb.DuckDBPyConnection,
                name,
                self._timed(getattr(duckdb.DuckDBPyConnection, name)),
            )

    def _timed(self, plain):
        def timed(con, *args, **kwargs):
            if self._depth:  # (a statement running others: counted once)
                return plain(con, *args, **kwargs)
            self._depth += 1
            t = time.perf_counter()
            try:
                return plain(con, *args, **kwargs)
            finally:
                self._depth -= 1
                self._add(args[0] if args else "", time.perf_counter() - t)

        return timed

    def _add(self, query, seconds: float) -> None:
        text = query if isinstance(query, str) else getattr(query, "query", type(query).__name__)
        callers = [f for f in traceback.extract_stack(limit=14) if "/tasks/" in f.filename]
        where = " < ".join(f"{Path(f.filename).stem}.{f.name}" for f in callers[-2:][::-1])
        flat = SPACES.sub(" ", str(text)).strip()[:60]
        key = f"{where or '?'} | {flat}"
        entry = self.seen[key]
        entry[0] += 1
        entry[1] += seconds
        if seconds < SMALL:
            self.small[0] += 1
            self.small[1] += seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, required=True)
    ap.add_argument("--customers", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--workdir", type=Path, default=HERE / "data")
    ap.add_argument("--top", type=int, default=30)
    args = ap.parse_args(argv)
    key = inbox.src_key(args.workdir, args.customers, args.events, args.seed)
    src, warm = key / "src", key / "states" / engine_version() / "warm"
    if not (warm / "adbill.duckdb").exists():
        print(f"no saved state at {warm}: run bench/run.py --events {args.events} first")
        return 2
    plan = inbox.make_plan(args.customers, args.events, args.seed)
    run_dir = args.workdir / "run"
    restore(run_dir, warm, src, inbox.warmup_files(src, plan) + inbox.day_files(src, plan, 0))

    from tasks.pipeline import run_billing  # noqa: PLC0415
    from tasks.settings import Settings  # noqa: PLC0415

    stats = Statements()
    stats.wrap()
    t = time.perf_counter()
    run_billing(Settings(data_dir=run_dir), inbox.day_of(0), trigger="bench")
    wall = time.perf_counter() - t
    in_duckdb = sum(s for _, s in stats.seen.values())
    count = sum(n for n, _ in stats.seen.values())
    print(f"\nbilling day {inbox.day_of(0)}, {args.events:,} events: {wall:.2f} s")
    print(
        f"{count:,} DuckDB statements: {in_duckdb:.2f} s; outside DuckDB {wall - in_duckdb:.2f} s"
    )
    print(
        f"statements under {SMALL * 1000:.0f} ms: {stats.small[0]:,}, "
        f"{stats.small[1]:.2f} s together\n"
    )
    print(f"| {'seconds':>7} | {'count':>5} | code < caller, statement |")
    print(f"|{'-' * 9}:|{'-' * 7}:|{'-' * 26}|")
    for k, (n, s) in sorted(stats.seen.items(), key=lambda kv: -kv[1][1])[: args.top]:
        print(f"| {s:7.3f} | {n:5d} | {k} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
