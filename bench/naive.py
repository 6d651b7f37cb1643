"""The naive per-event Python deduction beside the set-based engine, on the same billing day.

The naive loop is what a typical implementation does: per customer, walk the day's events in
(occurred_at, event_id) order, settle arrears from every pool the moment it becomes
available, and draw each event from the live pools in §5 order (subscriptions first, earlier
expiry, earlier start, pool_id: the pools table's `priority`); what the pools cannot cover
opens arrears. It reads exactly the inputs the engine's deduct stage reads (events, live
pools, carried arrears of one billing day, from the working database), and both must give the
same per-customer credits used, arrears opened and settled, and the same per-pool draws.

    uv run python bench/naive.py DATA_DIR DAY   # after that day was billed
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tasks.db import connect  # noqa: E402
from tasks.deduct import draw_day, draw_shard, shard_inputs  # noqa: E402


def load_day(state_db: Path, day: date, tz: str):
    """The deduct stage's inputs for the whole day (one shard): events, pools, arrears, start."""
    con = connect(state_db, read_only=True)
    try:
        return shard_inputs(con, day, tz=tz, shard=0, shards=1)
    finally:
        con.close()


def naive_draw(  # one piece on purpose: the typical per-event loop, read top to bottom
    events: pl.DataFrame, pools: pl.DataFrame, arrears: pl.DataFrame, day_start_us: int
) -> tuple[dict[int, list[int]], dict[int, int]]:
    """Per customer [used, arrears_opened, settled, arrears_outstanding]; per pool credits drawn."""
    by_customer: dict[int, list[list[int]]] = {}
    for key, cust, prio, avail, opening in pools.select(
        "pool_key", "customer_key", "priority", "available_from_us", "opening"
    ).iter_rows():
        by_customer.setdefault(cust, []).append([prio, avail, key, opening])
    for plist in by_customer.values():
        plist.sort()
    owed_in = dict(arrears.select("customer_key", "arrears_outstanding").iter_rows())
    totals: dict[int, list[int]] = {}
    drawn: dict[int, int] = {}

    def settle(plist: list[list[int]], t: int, row: list[int]) -> None:
        for p in plist:
            if row[3] == 0:
                return
            if p[1] <= t and p[3] > 0:
                take = min(row[3], p[3])
                p[3] -= take
                row[3] -= take
                row[2] += take
                drawn[p[2]] = drawn.get(p[2], 0) + take

    def customer(cust: int, times: list[int], credits: list[int]) -> None:
        plist = by_customer.get(cust, [])
        row = [0, 0, 0, owed_in.get(cust, 0)]  # used, arrears opened, settled, outstanding
        totals[cust] = row
        starts = sorted({p[1] for p in plist if p[1] > day_start_us})
        settle(plist, day_start_us, row)
        s = 0
        for t, need in zip(times, credits, strict=True):
            while s < len(starts) and starts[s] <= t:
                settle(plist, starts[s], row)
                s += 1
            for p in plist:
                if p[1] <= t and p[3] > 0:
                    take = min(need, p[3])
                    p[3] -= take
                    need -= take
                    row[0] += take
                    drawn[p[2]] = drawn.get(p[2], 0) + take
                    if need == 0:
                        break
            if need:
                row[1] += need
                row[3] += need
        while s < len(starts):
            settle(plist, starts[s], row)
            s += 1

    cur, times, credits = None, [], []
    for cust, t, c in events.select("customer_key", "occurred_at_us", "credits").iter_rows():
        if cust != cur:
            if cur is not None:
                customer(cur, times, credits)
            cur, times, credits = cust, [], []
        times.append(t)
        credits.append(c)
    if cur is not None:
        customer(cur, times, credits)
    for cust in set(by_customer) | set(owed_in):  # no events today: settlements only
        if cust not in totals:
            customer(cust, [], [])
    return totals, drawn


def engine_totals(draws) -> tuple[dict[int, list[int]], dict[int, int]]:
    """The same figures from the set-based engine's pieces and end state."""
    p = draws.pieces
    per = p.group_by("customer_key").agg(
        pl.col("credits").filter(pl.col("kind") == "use").sum().alias("used"),
        pl.col("credits").filter(pl.col("kind") == "arrears").sum().alias("opened"),
        pl.col("credits").filter(pl.col("kind") == "settle").sum().alias("settled"),
    )
    out = {c: [u, o, s, 0] for c, u, o, s in per.iter_rows()}
    for c, owed in draws.arrears.iter_rows():
        out.setdefault(c, [0, 0, 0, 0])[3] = owed
    pools = dict(
        p.filter(pl.col("pool_key").is_not_null())
        .group_by("pool_key")
        .agg(pl.col("credits").sum())
        .iter_rows()
    )
    return out, pools


def _nonzero(d: dict) -> dict:
    return {k: v for k, v in d.items() if (any(v) if isinstance(v, list) else v)}


def compare(state_db: Path, day: date, tz: str = "Asia/Shanghai", repeat: int = 1) -> dict:
    """Time both on the day's inputs (best of `repeat`) and check they agree."""
    t = time.perf_counter()
    inputs = load_day(state_db, day, tz)
    events, pools, arrears = inputs.events, inputs.pools, inputs.arrears
    day_start_us = inputs.day_start_us
    load = time.perf_counter() - t
    naive_s, engine_s, shard_s = [], [], []
    for _ in range(repeat):
        t = time.perf_counter()
        naive = naive_draw(events, pools, arrears, day_start_us)
        naive_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        draws = draw_day(events, pools, arrears, day_start_us)
        engine_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        draw_shard(inputs)
        shard_s.append(time.perf_counter() - t)
    engine = engine_totals(draws)
    same_customers = _nonzero(naive[0]) == _nonzero(engine[0])
    same_pools = _nonzero(naive[1]) == _nonzero(engine[1])
    totals = [sum(v[i] for v in naive[0].values()) for i in range(4)]
    return {
        "events": events.height,
        "pools": pools.height,
        "customers_with_arrears_in": arrears.height,
        "mid_day_pools": pools.filter(pl.col("available_from_us") > day_start_us).height,
        "load_seconds": load,
        "naive_seconds": min(naive_s),
        "engine_draw_day_seconds": min(engine_s),
        "engine_draw_shard_seconds": min(shard_s),
        "naive_over_engine": min(naive_s) / max(min(engine_s), 1e-9),
        "same_customer_totals": same_customers,
        "same_pool_draws": same_pools,
        "used": totals[0],
        "arrears_opened": totals[1],
        "settled": totals[2],
        "arrears_outstanding": totals[3],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data_dir", type=Path)
    p.add_argument("day", type=date.fromisoformat)
    p.add_argument("--tz", default="Asia/Shanghai")
    p.add_argument("--repeat", type=int, default=1)
    args = p.parse_args(argv)
    result = compare(args.data_dir / "state" / "adbill.duckdb", args.day, args.tz, args.repeat)
    print(json.dumps(result, indent=2))
    return 0 if result["same_customer_totals"] and result["same_pool_draws"] else 1


if __name__ == "__main__":
    sys.exit(main())
