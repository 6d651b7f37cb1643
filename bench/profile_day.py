"""Where a billing day's time goes, one operation at a time (for docs/performance.md).

    uv run python bench/profile_day.py --events N [--customers 10000] [--workdir bench/data]

Needs a `bench/run.py --events N` before it (the warmed-up state and the day's files). On a
scratch copy of the warmed-up state it ingests the bench day's usage file through the
engine, printing the steps as the engine times them (read, validate and rate in one pass,
reasons of the lines not clean, store) and each SQL file's share; then the file's sha256,
and the deduct stage's pieces (shard inputs, the Polars draw, building ledger rows, the
load). The deduct functions are called directly, so that part follows the engine's code and
may need adjusting when the engine changes."""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import inbox  # noqa: E402
from run_machine import engine_version  # noqa: E402

from tasks import db  # noqa: E402
from tasks import deduct as D  # noqa: E402
from tasks import ingest as I  # noqa: E402
from tasks import ingest_usage as U  # noqa: E402
from tasks.catalog import load_catalog  # noqa: E402
from tasks.db import connect  # noqa: E402
from tasks.settings import Settings  # noqa: E402


class Clock:
    def __init__(self) -> None:
        self.s: dict[str, float] = defaultdict(float)

    def __call__(self, name: str, fn, *a, **k):
        t = time.perf_counter()
        out = fn(*a, **k)
        self.s[name] += time.perf_counter() - t
        return out


def profile_ingest(con, usage: Path, tz: str, clock: Clock, tmp: Path) -> None:
    """The bench day's usage ingest through the engine (tasks.ingest.ingest_inbox on an inbox
    holding only that file, a copy: a hard link is turned away): its steps as the engine
    times them, and each SQL file's share of them."""
    inbox_dir = tmp / "inbox"
    (inbox_dir / "usage").mkdir(parents=True)
    shutil.copy2(usage, inbox_dir / "usage" / usage.name)
    catalog = load_catalog(Settings().catalog_path)
    plain_run_sql = db.run_sql

    def timed_sql(con, name: str, params: dict | None = None) -> None:
        clock(f"  sql/{name}.sql", plain_run_sql, con, name, params)

    for module in (I, U):
        module.run_sql = timed_sql
    try:
        report = I.ingest_inbox(con, inbox_dir, catalog, tz=tz, run_id="profile")
    finally:
        for module in (I, U):
            module.run_sql = plain_run_sql
    for step, seconds in report.seconds.items():
        clock.s[f"ingest: {step}"] += seconds


def profile_deduct(con, day: date, tz: str, clock: Clock) -> dict:
    reads = "deduct: shard_inputs (DuckDB reads)"
    inputs = clock(reads, D.shard_inputs, con, day, tz=tz, shard=0, shards=1)
    draw = (inputs.events, inputs.pools, inputs.arrears, inputs.day_start_us)
    clock("deduct: draw_day (Polars draw)", D.draw_day, *draw)
    draws = clock("deduct: draw_shard (draw + ledger rows)", D.draw_shard, inputs)
    con.execute("begin transaction")
    clock("deduct: load_shard (insert ledger, pool_days)", D.load_shard, con, day, draws)
    con.execute("rollback")
    return {"events": inputs.events.height, "ledger_rows": draws.entries.height}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, required=True)
    ap.add_argument("--customers", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--workdir", type=Path, default=HERE / "data")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    key = inbox.src_key(args.workdir, args.customers, args.events, args.seed)
    warm = key / "states" / engine_version() / "warm" / "adbill.duckdb"
    usage = key / "src" / "usage" / f"usage-{inbox.day_of(0)}.jsonl"
    tz = Settings().billing_tz
    clock = Clock()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        db = Path(tmp) / "adbill.duckdb"
        shutil.copyfile(warm, db)
        con = connect(db)
        profile_ingest(con, usage, tz, clock, Path(tmp))
        t = time.perf_counter()
        h = hashlib.sha256()
        with usage.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        clock.s["orders/files: sha256 of the usage file"] = time.perf_counter() - t
        extra = profile_deduct(con, inbox.day_of(0), tz, clock)
        con.close()
    out = {"events": args.events, **extra, "seconds": dict(clock.s)}
    for k, v in clock.s.items():
        print(f"{k:55} {v:8.3f}")
    if args.out:
        args.out.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
