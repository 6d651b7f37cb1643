"""Where a billing day's time goes, one operation at a time (for docs/performance.md).

    uv run python bench/profile_day.py --events N [--customers 10000] [--workdir bench/data]

Needs a `bench/run.py --events N` before it (the warmed-up state and the day's files). On a
scratch copy of the warmed-up state it replays the usage ingest of the bench day chunk by
chunk, timing the engine's own pieces separately: reading lines, the JSON extraction SQL,
the Pandera reject reasons, the business checks and rating SQL, the insert of accepted events
and the commit; then the file's sha256, and the deduct stage's pieces (shard inputs, the
Polars draw, building ledger rows, the load). Internal engine functions are called directly,
so this helper follows the engine's code and may need adjusting when the engine changes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import inbox  # noqa: E402
import polars as pl  # noqa: E402
from run_machine import engine_version  # noqa: E402

from tasks import deduct as D  # noqa: E402
from tasks import ingest as I  # noqa: E402
from tasks.catalog import load_catalog  # noqa: E402
from tasks.db import connect, run_sql, sql  # noqa: E402
from tasks.settings import Settings  # noqa: E402
from tasks.validate import TIMESTAMP_WITH_OFFSET, failing_rows  # noqa: E402


class Clock:
    def __init__(self) -> None:
        self.s: dict[str, float] = defaultdict(float)

    def __call__(self, name: str, fn, *a, **k):
        t = time.perf_counter()
        out = fn(*a, **k)
        self.s[name] += time.perf_counter() - t
        return out


def profile_ingest(con, usage: Path, tz: str, clock: Clock) -> None:
    """The steps of tasks.ingest.ingest_usage_file, timed one by one."""
    cat = load_catalog(Settings().catalog_path)
    con.register("catalog_products", cat.products().to_arrow())
    con.register("catalog_editions", cat.editions.to_arrow())
    con.register("catalog_functions", cat.functions.to_arrow())
    file_id = 999_999
    keys = {"file_id": file_id, "first_key": 10**12}
    con.execute("begin transaction")
    chunks = I.iter_line_chunks(usage)
    while True:
        chunk = clock("read: lines in batches (pyarrow CSV reader)", next, chunks, None)
        if chunk is None:
            break
        con.register("chunk", chunk)
        clock(
            "validate: extract_events.sql into a temp table (DuckDB JSON)",
            con.execute,
            "create or replace temp table batch as " + sql("extract_events"),
            {"timestamp_pattern": TIMESTAMP_WITH_OFFSET},
        )
        checked = clock(
            "validate: the checked facts to Polars",
            lambda: con.sql(f"select line_no, {I.EVENT_CHECKS} from batch order by line_no").pl(),
        )
        failing = clock("validate: failing_rows (Pandera)", failing_rows, checked, "usage")
        failures = pl.DataFrame(
            {"line_no": checked["line_no"].gather(failing["index"]), "reason": failing["reason"]}
        )
        con.register("batch_failures", failures.to_arrow())
        clock(
            "rate: accept_events.sql (business checks, credits)",
            run_sql,
            con,
            "accept_events",
            {"tz": tz},
        )
        clock(
            "store: store_events.sql (insert events, rejects)", run_sql, con, "store_events", keys
        )
        clock("store: commit", con.execute, "commit")
        con.execute("begin transaction")
        con.unregister("chunk")
    lo, hi = con.execute(
        f"select min(day), max(day) from events where file_id = {file_id}"
    ).fetchall()[0]
    clock(
        "store: dedupe_events.sql (the file's duplicates, too late)",
        run_sql,
        con,
        "dedupe_events",
        {
            "file_id": file_id,
            "min_day": lo - timedelta(days=2),
            "max_day": hi + timedelta(days=2),
            "late_before": date(1, 1, 1),
        },
    )
    clock("store: commit", con.execute, "commit")


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
        profile_ingest(con, usage, tz, clock)
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
