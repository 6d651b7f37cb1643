"""Credit draws of a billing day: events and arrears against pools, in rule order (§5)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

from tasks.db import frame, scalar
from tasks.db import sql as sql_text

EPOCH = date(2000, 1, 1)
KEY_SCALE = 1 << 40  # customer_key * 2**40 + cumulative position: one sortable int64 key


@dataclass(frozen=True)
class DayDraws:
    """Pieces of the day: each a (customer, item, pool or none, credits), and the end state."""

    pieces: pl.DataFrame  # kind, customer_key, pool_key, event_key, posted_at_us, credits
    remaining: pl.DataFrame  # pool_key, remaining after the day's draws (before expiry)
    arrears: pl.DataFrame  # customer_key, arrears_outstanding at the day's end


def _segments(boundaries: pl.DataFrame, frame: pl.DataFrame, time_col: str) -> pl.DataFrame:
    """Number each row with its segment: how many mid-day pool starts are at or before it."""
    touched = frame.join(boundaries.select("customer_key").unique(), on="customer_key", how="semi")
    rest = frame.join(touched.select("customer_key").unique(), on="customer_key", how="anti")
    counted = (
        touched.with_row_index("_row")
        .join(boundaries, on="customer_key")
        .group_by("_row")
        .agg((pl.col("boundary_us") <= pl.col(time_col)).sum().cast(pl.Int32).alias("segment"))
    )
    touched = touched.with_row_index("_row").join(counted, on="_row", how="left").drop("_row")
    return pl.concat(
        [rest.with_columns(pl.lit(0, dtype=pl.Int32).alias("segment")), touched],
        how="vertical_relaxed",
    )


def _draw_segment(items: pl.DataFrame, capacity: pl.DataFrame) -> pl.DataFrame:
    """Match cumulative demand to cumulative capacity per customer; the rest is uncovered.

    items: customer_key, item (0 = arrears settlement, else event order), event_key, size,
    posted_at_us — sorted by customer_key, item. capacity: customer_key, pool_key, remaining —
    sorted by customer_key, priority. Returns one row per (item, pool or null) piece.
    """
    items = items.with_columns(pl.col("size").cum_sum().over("customer_key").alias("d_end"))
    items = items.with_columns((pl.col("d_end") - pl.col("size")).alias("d_start"))
    demand = items.group_by("customer_key").agg(pl.col("d_end").last().alias("d_total"))
    capacity = capacity.with_columns(
        pl.col("remaining").cum_sum().over("customer_key").alias("c_end")
    ).with_columns((pl.col("c_end") - pl.col("remaining")).alias("c_start"))
    supply = capacity.group_by("customer_key").agg(pl.col("c_end").last().alias("c_total"))
    cust = pl.col("customer_key").cast(pl.Int64)
    points = (
        pl.concat(
            [
                items.select("customer_key", pl.col("d_start").alias("pos")),
                capacity.select("customer_key", pl.col("c_start").alias("pos")),
                supply.select("customer_key", pl.col("c_total").alias("pos")),
            ]
        )
        .join(demand, on="customer_key")
        .filter(pl.col("pos") < pl.col("d_total"))
        .unique()
        .with_columns(((cust * KEY_SCALE) + pl.col("pos")).alias("key"))
        .sort("key")
    )
    nxt = pl.col("pos").shift(-1)
    same = pl.col("customer_key").shift(-1) == pl.col("customer_key")
    points = points.with_columns(
        (pl.when(same).then(nxt).otherwise(pl.col("d_total")) - pl.col("pos")).alias("credits")
    )
    points = points.join_asof(
        items.select(
            ((cust * KEY_SCALE) + pl.col("d_start")).alias("key"),
            "item",
            "event_key",
            "posted_at_us",
        ).sort("key"),
        on="key",
        strategy="backward",
    )
    points = points.join_asof(
        capacity.select(
            ((cust * KEY_SCALE) + pl.col("c_start")).alias("key"),
            pl.col("customer_key").alias("_pc"),
            "pool_key",
        ).sort("key"),
        on="key",
        strategy="backward",
    ).join(supply, on="customer_key", how="left")
    covered = (pl.col("_pc") == pl.col("customer_key")) & (pl.col("pos") < pl.col("c_total"))
    return points.select(
        "customer_key",
        "item",
        "event_key",
        "posted_at_us",
        pl.when(covered).then(pl.col("pool_key")).otherwise(None).alias("pool_key"),
        "credits",
    )


def draw_day(
    events: pl.DataFrame,
    pools: pl.DataFrame,
    arrears: pl.DataFrame,
    day_start_us: int,
) -> DayDraws:
    """Draw a day's charged events and carried arrears from the pools live that day.

    events: event_key, customer_key, occurred_at_us, credits (> 0), in (customer_key,
    occurred_at, event_id) order. pools: pool_key, customer_key, priority, available_from_us,
    opening (credits left at the day's start, or at grant). arrears: customer_key,
    arrears_outstanding carried in. Pools expire only at midnights, so within a day the live
    set only grows: the day splits at mid-day pool starts into segments with a fixed set.
    """
    boundaries = (
        pools.filter(pl.col("available_from_us") > day_start_us)
        .select("customer_key", pl.col("available_from_us").alias("boundary_us"))
        .unique()
        .sort("customer_key", "boundary_us")
        .with_columns(
            pl.int_range(1, pl.len() + 1).over("customer_key").cast(pl.Int32).alias("segment")
        )
    )
    events = _segments(boundaries, events.with_row_index("order"), "occurred_at_us").sort("order")
    state = _segments(boundaries, pools, "available_from_us").with_columns(
        pl.col("opening").alias("remaining")
    )
    debt = arrears.filter(pl.col("arrears_outstanding") > 0).select(
        "customer_key", pl.col("arrears_outstanding").alias("owed")
    )
    starts = pl.concat(
        [
            pl.DataFrame(
                {"customer_key": [], "segment": [], "boundary_us": []},
                schema={
                    "customer_key": pools.schema["customer_key"],
                    "segment": pl.Int32,
                    "boundary_us": pl.Int64,
                },
            ),
            boundaries.select("customer_key", "segment", "boundary_us"),
        ]
    )
    n_segments = int(boundaries["segment"].max() or 0) + 1
    pieces: list[pl.DataFrame] = []
    for k in range(n_segments):
        seg_events = events.filter(pl.col("segment") == k)
        capacity = (
            state.filter((pl.col("segment") <= k) & (pl.col("remaining") > 0))
            .sort("customer_key", "priority")
            .select("customer_key", "pool_key", "remaining")
        )
        seg_start = (
            starts.filter(pl.col("segment") == k).select("customer_key", "boundary_us")
            if k
            else None
        )
        settle = debt.filter(pl.col("owed") > 0).join(
            capacity.select("customer_key").unique(), on="customer_key"
        )
        if k:
            settle = settle.join(seg_start, on="customer_key")
            settle_at = pl.col("boundary_us")
        else:
            settle_at = pl.lit(day_start_us, dtype=pl.Int64)
        items = pl.concat(
            [
                settle.select(
                    "customer_key",
                    pl.lit(0, dtype=pl.Int64).alias("item"),
                    pl.lit(None, dtype=pl.Int64).alias("event_key"),
                    pl.col("owed").cast(pl.Int64).alias("size"),
                    settle_at.cast(pl.Int64).alias("posted_at_us"),
                ),
                seg_events.select(
                    "customer_key",
                    (pl.col("order").cast(pl.Int64) + 1).alias("item"),
                    pl.col("event_key").cast(pl.Int64),
                    pl.col("credits").cast(pl.Int64).alias("size"),
                    pl.col("occurred_at_us").cast(pl.Int64).alias("posted_at_us"),
                ),
            ]
        ).sort("customer_key", "item")
        if items.height == 0:
            continue
        drawn = _draw_segment(items, capacity)
        pieces.append(drawn)
        used = (
            drawn.filter(pl.col("pool_key").is_not_null())
            .group_by("pool_key")
            .agg(pl.col("credits").sum().alias("drawn"))
        )
        state = (
            state.join(used, on="pool_key", how="left")
            .with_columns((pl.col("remaining") - pl.col("drawn").fill_null(0)).alias("remaining"))
            .drop("drawn")
        )
        owed_change = drawn.group_by("customer_key").agg(
            (
                pl.when((pl.col("item") == 0) & pl.col("pool_key").is_not_null())
                .then(-pl.col("credits"))
                .when((pl.col("item") > 0) & pl.col("pool_key").is_null())
                .then(pl.col("credits"))
                .otherwise(0)
            )
            .sum()
            .alias("delta")
        )
        debt = (
            debt.join(owed_change, on="customer_key", how="full", coalesce=True)
            .with_columns(
                (pl.col("owed").fill_null(0) + pl.col("delta").fill_null(0)).alias("owed")
            )
            .drop("delta")
        )
    schema = {
        "customer_key": pl.Int32,
        "item": pl.Int64,
        "event_key": pl.Int64,
        "posted_at_us": pl.Int64,
        "pool_key": pl.Int64,
        "credits": pl.Int64,
    }
    all_pieces = (
        pl.concat([p.cast(schema) for p in pieces]) if pieces else pl.DataFrame(schema=schema)
    )
    kind = (
        pl.when(pl.col("item") == 0)
        .then(pl.lit("settle"))
        .when(pl.col("pool_key").is_null())
        .then(pl.lit("arrears"))
        .otherwise(pl.lit("use"))
    )
    all_pieces = all_pieces.filter(~((pl.col("item") == 0) & pl.col("pool_key").is_null()))
    return DayDraws(
        pieces=all_pieces.with_columns(kind.alias("kind")).drop("item"),
        remaining=state.select("pool_key", "remaining"),
        arrears=debt.select("customer_key", pl.col("owed").alias("arrears_outstanding")),
    )


# ---------------------------------------------------------------- the stage on the warehouse

DAY_BITS, CUSTOMER_BITS = 47, 24  # entry_id = day_number << 47 | customer_key << 24 | seq
GRANT_SEQ, DRAW_SEQ, EXPIRE_SEQ = 0, 1 << 10, (1 << 24) - (1 << 10)


def entry_base(day_number: pl.Expr | int, customer_key: pl.Expr) -> pl.Expr:
    """The first entry_id of a customer's day; a ledger row adds its sequence number."""
    return (pl.lit(day_number, dtype=pl.Int64) * (1 << DAY_BITS)) + (
        customer_key.cast(pl.Int64) * (1 << CUSTOMER_BITS)
    )


@dataclass(frozen=True)
class ShardInputs:
    """What drawing one shard of customers for one day needs: plain frames, no connection."""

    events: pl.DataFrame  # event_key, customer_key, occurred_at_us, credits; in draw order
    pools: pl.DataFrame  # live_pools.sql
    arrears: pl.DataFrame  # customer_key, arrears_outstanding carried in
    day_start_us: int
    day_number: int  # days since EPOCH: the high bits of entry_id


@dataclass(frozen=True)
class ShardDraws:
    """One shard's ledger entries and pool figures for the day, ready to load."""

    entries: pl.DataFrame
    pool_days: pl.DataFrame
    events: int


# shards are a stable hash of customer_id (customers.shard_hash = md5_number_lower)
SHARD_FILTER = (
    "customer_key in (select customer_key from customers where shard_hash % $shards = $shard)"
)


def shard_inputs(con, day: date, *, tz: str, shard: int, shards: int) -> ShardInputs:
    """Read one shard's events, live pools and carried arrears for the day."""
    params = {"day": day, "tz": tz, "shard": shard, "shards": shards}
    events = frame(
        con,
        f"""
        select event_key, customer_key, epoch_us(occurred_at) as occurred_at_us, credits
        from events
        where day = $day and credits > 0 and {SHARD_FILTER}
        order by customer_key, occurred_at, event_id
        """,
        params,
    )
    pools = frame(con, sql_text("live_pools").replace("$shard_filter", SHARD_FILTER), params)
    arrears = frame(
        con,
        f"""
        select customer_key, arrears_outstanding from customer_days
        where day = $day - 1 and arrears_outstanding > 0 and {SHARD_FILTER}
        """,
        params,
    )
    return ShardInputs(
        events=events.cast({"customer_key": pl.Int32}),
        pools=pools.cast({"customer_key": pl.Int32}),
        arrears=arrears.cast({"customer_key": pl.Int32}),
        day_start_us=scalar(con, "select epoch_us(timezone($tz, $day::timestamp))", params),
        day_number=(day - EPOCH).days,
    )


def draw_shard(inputs: ShardInputs) -> ShardDraws:
    """Draw one shard's day: ledger entries (grants, draws) and pool figures. Pure Polars."""
    pools, day_number = inputs.pools, inputs.day_number
    draws = draw_day(inputs.events, pools, inputs.arrears, inputs.day_start_us)
    kind_rank = pl.col("kind").replace_strict(
        {"settle": 0, "use": 1, "arrears": 1}, return_dtype=pl.Int8
    )
    entries = (
        draws.pieces.join(pools.select("pool_key", "priority"), on="pool_key", how="left")
        .sort("customer_key", "posted_at_us", kind_rank, "event_key", "priority", nulls_last=True)
        .with_columns(
            (
                entry_base(day_number, pl.col("customer_key"))
                + DRAW_SEQ
                + pl.int_range(pl.len()).over("customer_key")
            ).alias("entry_id")
        )
        .select(
            "entry_id", "customer_key", "pool_key", "event_key", "posted_at_us", "kind", "credits"
        )
    )
    grants = pools.filter(pl.col("granted") > 0).select(
        (entry_base(day_number, pl.col("customer_key")) + GRANT_SEQ + pl.col("priority")).alias(
            "entry_id"
        ),
        pl.col("customer_key").cast(pl.Int32),
        "pool_key",
        pl.lit(None, dtype=pl.Int64).alias("event_key"),
        pl.col("available_from_us").alias("posted_at_us"),
        pl.lit("grant").alias("kind"),
        pl.col("granted").alias("credits"),
    )
    per_pool = (
        draws.pieces.filter(pl.col("pool_key").is_not_null())
        .group_by("pool_key")
        .agg(
            pl.col("credits").filter(pl.col("kind") == "use").sum().alias("used"),
            pl.col("credits").filter(pl.col("kind") == "settle").sum().alias("settled"),
        )
    )
    pool_days = (
        pools.join(per_pool, on="pool_key", how="left")
        .join(draws.remaining, on="pool_key", how="left")
        .with_columns(pl.col("used", "settled").fill_null(0))
    )
    return ShardDraws(
        entries=pl.concat([grants, entries], how="vertical_relaxed"),
        pool_days=pool_days,
        events=inputs.events.height,
    )


def load_shard(con, day: date, draws: ShardDraws) -> None:
    """Write one shard's ledger entries and pool_days rows."""
    con.register("day_entries", draws.entries.to_arrow())
    con.execute(
        """
        insert into ledger_entries
        select entry_id, $day, customer_key, pool_key, event_key,
               make_timestamptz(posted_at_us), kind, credits
        from day_entries
        """,
        {"day": day},
    )
    con.unregister("day_entries")
    con.register("day_pools", draws.pool_days.to_arrow())
    con.execute(sql_text("pool_days"), {"day": day})
    con.unregister("day_pools")


def deduct_shard(con, day: date, *, tz: str, shard: int, shards: int) -> dict[str, int]:
    """Draw the day's events of one shard of customers in-process; write the results."""
    draws = draw_shard(shard_inputs(con, day, tz=tz, shard=shard, shards=shards))
    load_shard(con, day, draws)
    return {"events": draws.events}
