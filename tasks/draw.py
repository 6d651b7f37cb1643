"""The day's credit draws, pure Polars: events and arrears against pools in rule order (§5).

No connection here: tasks/deduct.py reads a shard's inputs, calls `draw_day` and loads the
result."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

# the pieces and how they are drawn against fixed pools; tasks.deduct imports KIND and
# first_in_run from here
from tasks.draw_events import KIND, PIECES, draw_events, first_in_run  # noqa: F401

EPOCH = date(2000, 1, 1)


@dataclass(frozen=True)
class DayDraws:
    """Pieces of the day, each a (customer, item, pool or none, credits), and the end state.

    The pieces are in ledger order: by customer and posted_at, a settlement before the events
    of its instant, events of one instant by event_key, an item's pools by priority and its
    arrears last.
    """

    pieces: pl.DataFrame  # customer_key, event_key, posted_at_us, pool_key, credits, kind
    remaining: pl.DataFrame  # pool_key, remaining after the day's draws (before expiry)
    arrears: pl.DataFrame  # customer_key, arrears_outstanding at the day's end


def _settle(capacity: pl.DataFrame, owed: pl.DataFrame) -> pl.DataFrame:
    """Carried arrears paid out of the pools in priority order, before any event (§5).

    capacity: customer_key, priority, pool_key, remaining (> 0). owed: customer_key, owed (> 0),
    posted_at_us. Returns the settle pieces, by customer and priority.
    """
    c_end = pl.col("remaining").cum_sum().over("customer_key")
    return (
        capacity.join(owed, on="customer_key")
        .sort("customer_key", "priority")
        .with_columns(
            (pl.min_horizontal(c_end, "owed") - c_end + pl.col("remaining")).alias("credits")
        )
        .filter(pl.col("credits") > 0)
        .select(
            "customer_key",
            pl.lit(None, dtype=pl.Int64).alias("event_key"),
            "posted_at_us",
            "pool_key",
            "credits",
            pl.lit("settle", dtype=KIND).alias("kind"),
        )
        .cast(PIECES)
    )


def _draw_segment(
    events: pl.DataFrame, capacity: pl.DataFrame, owed: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """A part of the day with a fixed set of live pools: settlements first, then the events.

    capacity: customer_key, priority, pool_key, remaining (> 0); owed: customer_key, owed (> 0),
    posted_at_us (when it is paid). Returns the pieces by customer, what each pool gave
    (pool_key, credits) and each customer's change of arrears (customer_key, credits).
    """
    settled = _settle(capacity, owed)
    paid = settled.group_by("pool_key").agg(pl.col("credits").sum().alias("paid"))
    left = (
        capacity.join(paid, on="pool_key", how="left")
        .with_columns(pl.col("remaining") - pl.col("paid").fill_null(0))
        .filter(pl.col("remaining") > 0)
    )
    pieces, stretches = settled, settled.select("pool_key", "customer_key", "credits").clear()
    if events.height:
        pieces, stretches = draw_events(events, left, settled)
    used = pl.concat(
        [
            settled.select("pool_key", "credits"),
            stretches.filter(pl.col("pool_key").is_not_null()).select("pool_key", "credits"),
        ]
    )
    change = pl.concat(
        [
            settled.select("customer_key", -pl.col("credits")),
            stretches.filter(pl.col("pool_key").is_null()).select("customer_key", "credits"),
        ]
    )
    return pieces, used, change


def _after(
    state: pl.DataFrame, used: pl.DataFrame, debt: pl.DataFrame, change: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Pools' remaining credits and customers' arrears after a part of the day."""
    used = used.group_by("pool_key").agg(pl.col("credits").sum().alias("used"))
    state = (
        state.join(used, on="pool_key", how="left")
        .with_columns(pl.col("remaining") - pl.col("used").fill_null(0))
        .drop("used")
    )
    change = change.group_by("customer_key").agg(pl.col("credits").sum().alias("change"))
    debt = debt.join(change, on="customer_key", how="full", coalesce=True).select(
        "customer_key", pl.col("owed").fill_null(0) + pl.col("change").fill_null(0)
    )
    return state, debt


def _segment(rows: pl.DataFrame, starts: pl.DataFrame, time_col: str) -> pl.DataFrame:
    """Number each row with how many of its customer's mid-day pool starts are at or before it."""
    rows = rows.with_row_index("_row")
    counted = (
        rows.join(starts, on="customer_key")
        .group_by("_row")
        .agg((pl.col("boundary_us") <= pl.col(time_col)).sum().cast(pl.Int32).alias("segment"))
    )
    return (
        rows.join(counted, on="_row", how="left")
        .sort("_row")
        .drop("_row")
        .with_columns(pl.col("segment").fill_null(0))
    )


def tied_rows(key: list[pl.Expr]) -> pl.Expr:
    """True on rows whose key equals the previous or the next row's (the frame is sorted by it)."""
    prev = pl.all_horizontal([(k == k.shift(1)).fill_null(False) for k in key])
    after = pl.all_horizontal([(k == k.shift(-1)).fill_null(False) for k in key])
    return prev | after


def _ledger_order(pieces: pl.DataFrame, pools: pl.DataFrame) -> pl.DataFrame:
    """Events of one instant take their ledger places by event_key (they are drawn by event_id)."""
    tied = pieces.with_row_index("_row").filter(
        tied_rows([pl.col("customer_key"), pl.col("posted_at_us")])
    )
    if tied.height == 0:
        return pieces
    ordered = tied.join(pools.select("pool_key", "priority"), on="pool_key", how="left").sort(
        "customer_key",
        "posted_at_us",
        pl.col("kind") != "settle",
        "event_key",
        "priority",
        nulls_last=True,
    )
    return reorder_rows(pieces, tied["_row"], ordered["_row"])


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
    set only grows: a customer's day splits at its mid-day pool starts into parts with a fixed
    set. Most customers have none: their whole day is drawn at once.
    """
    starts = (
        pools.filter(pl.col("available_from_us") > day_start_us)
        .select("customer_key", pl.col("available_from_us").alias("boundary_us"))
        .unique()
        .sort("customer_key", "boundary_us")
    )
    events = events.select(
        "customer_key", "event_key", pl.col("occurred_at_us").alias("posted_at_us"), "credits"
    )
    state = pools.select(
        "customer_key",
        "priority",
        "pool_key",
        "available_from_us",
        pl.col("opening").alias("remaining"),
    )
    debt = arrears.filter(pl.col("arrears_outstanding") > 0).select(
        "customer_key", pl.col("arrears_outstanding").alias("owed")
    )
    split = pl.col("customer_key").is_in(starts["customer_key"].unique().implode())
    at_start = pl.lit(day_start_us, dtype=pl.Int64).alias("posted_at_us")
    whole = state.filter(~split)
    pieces, used, change = _draw_segment(
        events.filter(~split),
        whole.filter(pl.col("remaining") > 0),
        debt.filter(~split).with_columns(at_start),
    )
    whole, owed = _after(whole, used, debt.filter(~split), change)
    if starts.height:
        parts, state, debt = _draw_split_days(
            events.filter(split), state.filter(split), debt.filter(split), starts, at_start
        )
        # each customer's parts in day order, among the others (a stable sort, nearly sorted)
        pieces = pl.concat([pieces, *parts]).sort("customer_key", maintain_order=True)
        whole = pl.concat([whole, state])
        owed = pl.concat([owed, debt])
    return DayDraws(
        pieces=_ledger_order(pieces, pools),
        remaining=whole.select("pool_key", "remaining"),
        arrears=owed.select("customer_key", pl.col("owed").alias("arrears_outstanding")),
    )


def _draw_split_days(
    events: pl.DataFrame,
    state: pl.DataFrame,
    debt: pl.DataFrame,
    starts: pl.DataFrame,
    at_start: pl.Expr,
) -> tuple[list[pl.DataFrame], pl.DataFrame, pl.DataFrame]:
    """The customers with mid-day pool starts, part k of every such day at once (part k
    begins at the k-th start): the parts' pieces, then the pools and arrears after the day."""
    live = pl.col("remaining") > 0
    times = _segment(events, starts, "posted_at_us")
    state = _segment(state, starts, "available_from_us")
    begins = pl.concat(
        [
            starts.select("customer_key")
            .unique()
            .with_columns(at_start, pl.lit(0, dtype=pl.Int32).alias("segment")),
            starts.select(
                "customer_key",
                pl.col("boundary_us").alias("posted_at_us"),
                pl.int_range(1, pl.len() + 1).over("customer_key").cast(pl.Int32).alias("segment"),
            ),
        ]
    )
    parts = []
    for k in range(int(begins["segment"].max()) + 1):
        part, used, change = _draw_segment(
            times.filter(pl.col("segment") == k).drop("segment"),
            state.filter((pl.col("segment") <= k) & live).drop("segment"),
            debt.filter(pl.col("owed") > 0).join(
                begins.filter(pl.col("segment") == k).drop("segment"), on="customer_key"
            ),
        )
        parts.append(part)
        state, debt = _after(state, used, debt, change)
    return parts, state.drop("segment"), debt


def reorder_rows(rows: pl.DataFrame, tied: pl.Series, ordered: pl.Series) -> pl.DataFrame:
    """Rows with the tied positions (runs of equal sort keys) taken in the given order."""
    if (ordered == tied).all():
        return rows
    return rows.with_columns(
        rows[c].clone().scatter(tied, rows[c].gather(ordered)) for c in rows.columns
    )
