"""Which billing days a run bills, and one billing day through all its stages, atomically."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

import duckdb

from tasks.daily_figures import customer_days
from tasks.day_files import PARTITIONED
from tasks.db import execute, scalar, transaction
from tasks.deduct import carry_quiet_pools, check_entry_widths, deduct_shard, drop_live_pools
from tasks.expire import expire_day
from tasks.invariants import check_day
from tasks.keyed_files import record_changes
from tasks.statements import statements_day
from tasks.suspensions import suspensions_day

# a billed day's rows: its billed_days row and the per-day tables but events (ingest's, not
# billing's). Statements are not here: a changed final statement gets a new revision (§8)
DAY_TABLES = ("billed_days", *(t for t in PARTITIONED if t != "events"))


@dataclass(frozen=True)
class DayPlan:
    """A billing day to bill and why: new, late_data, rebill or price_change."""

    day: date
    reason: str


def first_day(con) -> date | None:
    """The earliest billing day any accepted order or event touches (or was billed: the
    events of old days live in their day files, tasks/day_files.py)."""
    return scalar(
        con,
        "select least((select min(purchase_day) from orders), (select min(day) from events), "
        "(select min(day) from billed_days))",
    )


def last_billed(con) -> date | None:
    return scalar(con, "select max(day) from billed_days")


# the pools a day from $day on had drawn, with their remaining credits at the close of the
# day before (a pool live only from $day on — one a late order now queues later — is back to
# its credits: nothing was drawn from it before $day)
UNBILLED_POOLS = """
create or replace temp table unbilled_pools as
with touched as (select distinct pool_key from pool_days where day >= $day),
before as (
    select pool_key, arg_max(remaining, day) as remaining
    from pool_days
    where day < $day and pool_key in (select pool_key from touched)
    group by pool_key
)
select p.pool_key, coalesce(b.remaining, p.credits) as remaining
from pools as p
join touched as t using (pool_key)
left join before as b using (pool_key)
where p.remaining is distinct from coalesce(b.remaining, p.credits)
"""


def unbill_from(con, day: date) -> None:
    """Forget billed days from `day` on, so that they are billed again (late data, rebill):
    their rows go, and the pools' remaining credits go back to the day before's close. A
    pool the days to come do not draw from (queued later by a late order) so keeps what it
    had then, not what the forgotten days left it."""
    execute(con, UNBILLED_POOLS, {"day": day})
    record_changes(con, "pools", "select pool_key from unbilled_pools")  # (published pools)
    execute(
        con,
        "update pools set remaining = u.remaining from unbilled_pools as u "
        "where u.pool_key = pools.pool_key",
    )
    con.execute("drop table unbilled_pools")
    for table in DAY_TABLES:
        con.execute(f"delete from {table} where day >= $day", {"day": day})


# why days a run unbilled wait (adbill_meta `unbilled_<reason>`, reason rebill or
# price_change: the first such day), kept until a run has billed them again: a run killed
# after it unbilled them (a price change's re-rating committed, a rebill's days dropped)
# leaves its rerun nothing else to tell why


def mark_unbilled(con, day: date, reason: str) -> None:
    """Record that `reason` unbilled the days from `day` (the earliest such day is kept)."""
    key = f"unbilled_{reason}"
    con.execute(
        "insert or replace into adbill_meta select $k, cast(least($d, coalesce("
        "(select try_cast(value as date) from adbill_meta where key = $k), $d)) as varchar)",
        {"k": key, "d": day},
    )


def unbilled(con) -> dict[str, date]:
    """The reasons that unbilled days no run has billed again yet, each with its first day."""
    try:
        rows = con.execute(
            "select key, try_cast(value as date) from adbill_meta where key like 'unbilled_%'"
        ).fetchall()
    except duckdb.CatalogException:  # (a working state from before adbill_meta)
        return {}
    return {k.removeprefix("unbilled_"): d for k, d in rows if d is not None}


def clear_unbilled(con) -> None:
    """The days unbilled are billed again: their reasons are no longer pending."""
    con.execute("delete from adbill_meta where key like 'unbilled_%'")


def plan_days(
    con,
    through: date,
    *,
    rebill_from: date | None = None,
    repriced_from: date | None = None,
) -> list[DayPlan]:
    """Every day to bill up to `through`, in order, each with its reason.

    Billing day D starts from D-1's close, so the first day not billed (late data, a rebill
    and a price change unbill their days at once) and every day after it up to `through`
    are billed. A rebill or a price change plans its days from its first (the data dir's
    first day at the earliest) whether or not its run has unbilled them yet: `adbill plan`
    and `adbill status` read the working state as it stands.
    """
    start = first_day(con)
    if start is None:
        return []
    # a billed day is stale when a file ingested after it touches it or an earlier day
    billed = {
        r[0]
        for r in con.execute(
            """
            select b.day from billed_days as b
            where b.day between ? and ?
              and not exists (
                  select 1 from ingested_files as f
                  where f.file_id > coalesce(b.files_seen, 0) and f.earliest_day <= b.day
              )
            """,
            [start, through],
        ).fetchall()
    }
    begin = start
    while begin in billed and begin <= through:
        begin += timedelta(days=1)
    for forced in (rebill_from, repriced_from):
        if forced is not None:
            begin = min(begin, max(forced, start))
    before = {
        r[0]
        for r in con.execute(
            "select distinct day from billing_runs where status = 'succeeded' and day >= ?",
            [begin],
        ).fetchall()
    }
    pending = unbilled(con)
    plans = []
    d = begin
    while d <= through:
        if d not in before:
            reason = "new"
        elif rebill_from is not None and d >= rebill_from:
            reason = "rebill"
        elif "rebill" in pending and d >= pending["rebill"]:
            reason = "rebill"  # (a rebill's run killed before it billed them again)
        elif repriced_from is not None and d >= repriced_from:
            reason = "price_change"
        elif "price_change" in pending and d >= pending["price_change"]:
            reason = "price_change"
        else:
            reason = "late_data"
        plans.append(DayPlan(d, reason))
        d += timedelta(days=1)
    return plans


def shard_count(con, day: date, requested: int, events_per_shard: int = 2_000_000) -> int:
    """Shards of customers for a day: as asked (at most one per customer: a shard more is
    an empty one, its files and task for nothing — 1,024 for 10 customers took minutes a
    day), or enough to keep each shard's events small."""
    if requested > 0:
        return max(1, min(requested, scalar(con, "select count(*) from customers")))
    n = scalar(con, "select count(*) from events where day = $day", {"day": day})
    return max(1, -(-n // events_per_shard))


def call_directly(name: str, fn: Callable, /, *args, **kwargs):
    """Run a stage in-process; the Prefect flow passes a runner that makes it a task."""
    return fn(*args, **kwargs)


def bill_day(
    con,
    day: date,
    *,
    tz: str,
    shards: int = 0,
    stage: Callable = call_directly,
    deduct: Callable | None = None,
    after_stage: Callable | None = None,
    progress: Callable[[str], None] | None = None,
    run_id: str | None = None,
    statements: bool = True,
) -> dict:
    """Bill one day: draws per shard, expiry, daily figures, invariants; all or nothing.

    `deduct(con, day, tz=, shards=) -> events` draws every shard elsewhere (the Dask path);
    by default each shard is drawn in-process as its own stage. `statements=False`: a later
    day of the same month follows in this run, which refreshes the month's statements.
    """
    say = progress or (lambda _m: None)
    hook = after_stage or (lambda _stage: None)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    with transaction(con):
        unbill_from(con, day)
        check_entry_widths(scalar(con, "select max(customer_key) from customers"), None)
        n = shard_count(con, day, shards)
        timings["unbill"] = time.perf_counter() - t
        t = time.perf_counter()
        events = _draw_shards(con, day, n, tz=tz, stage=stage, deduct=deduct, hook=hook)
        timings["deduct"] = time.perf_counter() - t
        expired = _day_stages(
            con, day, tz=tz, stage=stage, hook=hook, timings=timings, statements=statements
        )
        t = time.perf_counter()
        _mark_billed(con, day, run_id)
    timings["commit"] = time.perf_counter() - t
    say(f"billed {day}: {events:,} charged events in {n} shard(s), {expired:,} credits expired")
    return {"day": day, "events": events, "shards": n, "expired": expired, "timings": timings}


def _draw_shards(
    con, day: date, n: int, *, tz: str, stage: Callable, deduct: Callable | None, hook: Callable
) -> int:
    """The day's draws in `n` shards: all by `deduct` (the Dask path), else each shard
    in-process as its own stage (the quiet customers' pools carried first). How many charged
    events they drew."""
    carry_quiet_pools(con, day, tz=tz)  # (its temp table goes with the day's transaction)
    if deduct is not None:
        events = deduct(con, day, tz=tz, shards=n)
        drop_live_pools(con)
        hook("deduct")
        return events
    events = 0
    for s in range(n):
        drawn = stage(f"deduct-{day}-shard-{s}", deduct_shard, con, day, tz=tz, shard=s, shards=n)
        events += drawn["events"]
        if s == n - 1:
            drop_live_pools(con)
        hook("deduct")
    return events


def _day_stages(
    con,
    day: date,
    *,
    tz: str,
    stage: Callable,
    hook: Callable,
    timings: dict[str, float],
    statements: bool,
) -> int:
    """After the draws: expiry, daily figures, invariants, suspensions, statements, each a
    (Prefect) stage, timed, then the after-stage hook. The credits expired."""

    def step(key: str, name: str, fn: Callable, *args, **kwargs):
        started = time.perf_counter()
        result = stage(f"{name}-{day}", fn, con, day, *args, **kwargs)
        hook(key)
        timings[key] = time.perf_counter() - started
        return result

    expired = step("expire", "expire", expire_day, tz=tz)
    step("daily", "customer-days", customer_days, tz=tz)
    step("invariants", "invariants", check_day)
    step("suspensions", "suspensions", suspensions_day, tz=tz)
    step("statements", "statements", statements_day, tz=tz, refresh=statements)
    return expired


def _mark_billed(con, day: date, run_id: str | None) -> None:
    """The pools' remaining credits as the day left them, and the day recorded as billed (with
    the last file it saw, so a later file that touches it makes it stale)."""
    # the pools whose remaining the day changed, found once (a million customers' pools are
    # joined with the day's pool_days once, not once to record them and once to update them)
    execute(
        con,
        "create or replace temp table moved_pools as select d.pool_key, d.remaining "
        "from pool_days as d join pools using (pool_key) "
        "where d.day = $day and pools.remaining is distinct from d.remaining",
        {"day": day},
    )
    # the published pools are written as the rows changed (tasks/keyed_files.py)
    record_changes(con, "pools", "select pool_key from moved_pools")
    execute(
        con,
        "update pools set remaining = m.remaining from moved_pools as m "
        "where m.pool_key = pools.pool_key",
    )
    con.execute("drop table moved_pools")
    execute(
        con,
        "insert into billed_days select $day, $run_id, now(), "
        "(select coalesce(max(file_id), 0) from ingested_files)",
        {"day": day, "run_id": run_id},
    )
